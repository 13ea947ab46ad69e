"""Layer 1: which layouts exist, which are legal and why, and where every rank sits."""
