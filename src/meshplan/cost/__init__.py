"""Layer 2: the analytic cost model. Pure functions over numbers or numpy arrays.

Letters (jax-ml/scaling-book legend plus MoE): B sequences per attention-dp rank, T tokens per
attention-dp rank in one forward pass, S context length, D hidden, N/K query/KV heads, H head
dim, F FFN size, E experts, k top-k; degrees tp, dp, pp, ep, etp as in strategy.layout.
Every function accepts scalars or broadcastable numpy arrays, so the search evaluates thousands
of layouts and batch sizes in one call and the plan reuses the same code for one layout.
"""
