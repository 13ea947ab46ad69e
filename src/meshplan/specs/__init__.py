"""Layer 0: the inputs (model, hardware, workload, requirements), frozen and validated."""
