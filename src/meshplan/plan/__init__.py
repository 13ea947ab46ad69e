"""Layer 4: the plan, a versioned JSON document every report is rendered from."""
