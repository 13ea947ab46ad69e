"""Layer 6: the plan executed for real on torch.distributed (DESIGN.md section 11).

The only package that imports torch (optional extra: pip install 'meshplan[run]'; on CPU
machines torch==2.13.0)."""
