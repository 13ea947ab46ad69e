"""Layer 5: published measurements against predictions (DESIGN.md section 12)."""
