"""Layer 5: checking plans written elsewhere (DESIGN.md section 9): every claim recomputed."""
