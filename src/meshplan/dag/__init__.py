"""Layer 5: the deployment DAG, derived mechanically from a plan (DESIGN.md section 7)."""
