"""Layer 5: human-readable renderings of plan documents. Tables are made only here."""
