"""Layer 2: the analytic cost model. Pure functions over numbers or numpy arrays.

Letters in formulas and docstrings (jax-ml/scaling-book legend plus MoE), and the CostInputs field
each stands for: B sequences per attention-dp rank, T tokens per attention-dp rank in one forward
pass, S context length; D hidden_size, N num_heads, Kv num_kv_heads, H head_dim, F ffn_size, Fe
expert_ffn_size, E num_experts, k top_k; K draft tokens per step (spec_k); degrees tp, dp, pp, ep,
etp as in strategy.layout. Every function accepts scalars or broadcastable numpy arrays
(cost.floats.Floats), so the search evaluates thousands of layouts and batch sizes in one call and
the plan reuses the same code for one layout.
"""
