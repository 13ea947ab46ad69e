"""The reference model: a decoder with MHA/GQA attention (RoPE, KV cache) and dense or MoE FFNs
(router with top-k, softmax or sigmoid scoring, shared experts, dense first layers), built from
any catalog model's structure. Weights come from a seed, so every rank builds the same model.

Scale "tiny" keeps what parallelism depends on (layers and their kinds, query heads, KV heads,
experts, top-k, shared experts) and shrinks widths (head dim 8, hidden = heads x 8, FFN 64,
expert FFN 32, vocabulary 256) so it runs on a laptop CPU. It drops: MLA's latent compression
(attention becomes MHA with the same heads), attention windows, biases and RoPE scaling.
Scale "full" keeps the real widths (for GPUs).

Shapes: B sequences, T tokens, D hidden, N/K query/KV heads, H head dim, F FFN size.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

from meshplan.specs.model import AttentionKind, LayerKind, ModelSpec, RouterScoring


@dataclass(frozen=True, kw_only=True, slots=True)
class RefConfig:
    layers: tuple[LayerKind, ...]
    """The kind of every layer (dense or MoE)."""
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    experts: int
    top_k: int
    expert_ffn: int
    shared_ffn: int
    """Total FFN size of the shared experts (0: none)."""
    vocab: int
    sigmoid_router: bool
    rope_theta: float = 10000.0
    eps: float = 1e-6


def config_from_spec(m: ModelSpec, scale: str = "tiny") -> RefConfig:
    kinds = tuple(m.layer_kinds)
    kv = m.num_heads if m.attention is AttentionKind.MLA else m.num_kv_heads
    if scale == "full":
        return RefConfig(layers=kinds, hidden=m.hidden_size, heads=m.num_heads, kv_heads=kv, head_dim=m.head_dim,
                         ffn=m.ffn_size or 1, experts=m.num_experts, top_k=m.top_k, expert_ffn=m.expert_ffn_size,
                         shared_ffn=m.num_shared_experts * m.shared_ffn_size, vocab=m.vocab_size,
                         sigmoid_router=m.router_scoring is RouterScoring.SIGMOID)
    if scale != "tiny":
        raise ValueError(f"scale {scale!r}: expected tiny or full")
    return RefConfig(layers=kinds, hidden=m.num_heads * 8, heads=m.num_heads, kv_heads=kv, head_dim=8, ffn=64,
                     experts=m.num_experts, top_k=m.top_k, expert_ffn=32 if m.is_moe else 0,
                     shared_ffn=32 * m.num_shared_experts, vocab=256,
                     sigmoid_router=m.router_scoring is RouterScoring.SIGMOID)


class Weights:
    """Every parameter generated from (seed, name): identical on every rank, built lazily so a
    rank only materialises what it holds."""

    def __init__(self, cfg: RefConfig, seed: int, dtype: torch.dtype):
        self.cfg, self.seed, self.dtype = cfg, seed, dtype

    ROW_BLOCK = 64
    """Rows drawn per generator: a rank draws only the row blocks it keeps (a full-size GPU rank
    would otherwise draw every tensor it holds a slice of, whole, on one CPU thread)."""

    def get(self, name: str, *shape: int, scale: float | None = None, rows: slice = slice(None),
            cols: slice = slice(None)) -> torch.Tensor:
        """The parameter ``name``, or the block ``[rows, cols]`` of it that a rank holds. Drawn
        on the CPU (the generators live there), block by block of ROW_BLOCK rows, each from
        (seed, name, block); only the rank's block is copied to the default device."""
        std = scale if scale is not None else 1.0 / math.sqrt(shape[-1] if len(shape) > 1 else 1)
        start, stop, _ = rows.indices(shape[0])
        first, last = start // self.ROW_BLOCK, max(stop - 1, start) // self.ROW_BLOCK
        parts = []
        for b in range(first, last + 1):
            digest = int.from_bytes(hashlib.sha256(f"{self.seed}:{name}:{b}".encode()).digest()[:8], "little")
            n = min(self.ROW_BLOCK, shape[0] - b * self.ROW_BLOCK)
            parts.append(torch.randn(n, *shape[1:], generator=torch.Generator().manual_seed(digest),
                                     dtype=torch.float64, device="cpu"))
        drawn = torch.cat(parts)[start - first * self.ROW_BLOCK: stop - first * self.ROW_BLOCK]
        block = drawn if len(shape) == 1 else drawn[:, cols]
        return (block * std).to(dtype=self.dtype, device=torch.get_default_device()).contiguous()

    def block_shape(self, shape: tuple[int, ...], rows: slice, cols: slice) -> tuple[int, ...]:
        """The shape of the block ``[rows, cols]`` of a parameter of ``shape``."""
        n = len(range(*rows.indices(shape[0])))
        if len(shape) == 1:
            return (n,)
        return (n, len(range(*cols.indices(shape[1]))), *shape[2:])

    # Layer parameters: whole by default, or a rank's shard (query heads, KV heads, FFN columns).
    def attn(self, layer: int, q: slice = slice(None), kv: slice = slice(None)):
        """q / kv: the query / KV head range, in units of head_dim rows."""
        c = self.cfg
        d, h = c.hidden, c.head_dim
        qr = slice(None) if q == slice(None) else slice(q.start * h, q.stop * h)
        kr = slice(None) if kv == slice(None) else slice(kv.start * h, kv.stop * h)
        return {"norm": 1.0 + self.get(f"l{layer}.attn_norm", d, scale=0.1),
                "wq": self.get(f"l{layer}.wq", c.heads * h, d, rows=qr),
                "wk": self.get(f"l{layer}.wk", c.kv_heads * h, d, rows=kr),
                "wv": self.get(f"l{layer}.wv", c.kv_heads * h, d, rows=kr),
                "wo": self.get(f"l{layer}.wo", d, c.heads * h, cols=qr)}

    def ffn(self, name: str, hidden: int, ffn: int, part: slice = slice(None)):
        """SwiGLU FFN; ``part`` keeps FFN columns: rows of gate/up (column parallel), columns of
        down (row parallel)."""
        return {"gate": self.get(f"{name}.gate", ffn, hidden, rows=part),
                "up": self.get(f"{name}.up", ffn, hidden, rows=part),
                "down": self.get(f"{name}.down", hidden, ffn, cols=part)}


class WeightShapes(Weights):
    """The parameters a rank holds as shapes only (torch's meta device: no memory, nothing drawn):
    a Runner built with them is the one count of the bytes it would hold (runner.rank_weight_bytes)."""

    def get(self, name: str, *shape: int, scale: float | None = None, rows: slice = slice(None),
            cols: slice = slice(None)) -> torch.Tensor:
        return torch.empty(self.block_shape(shape, rows, cols), dtype=self.dtype, device="meta")


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding on the last dim of x [T, heads, H] at integer positions [T]
    (RoFormer, arXiv:2104.09864, with the half-split layout of Llama)."""
    h = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, h, 2, dtype=torch.float64, device=x.device) / h))
    ang = positions.to(torch.float64)[:, None] * inv[None, :]
    cos, sin = ang.cos().to(x.dtype)[:, None, :], ang.sin().to(x.dtype)[:, None, :]
    x1, x2 = x[..., : h // 2], x[..., h // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def swiglu(x: torch.Tensor, w: dict) -> torch.Tensor:
    """SwiGLU FFN (Shazeer, arXiv:2002.05202): down(silu(gate x) * up x)."""
    return torch.nn.functional.silu(x @ w["gate"].T) * (x @ w["up"].T) @ w["down"].T


def route(logits: torch.Tensor, top_k: int, sigmoid: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k expert ids and normalised weights per token (softmax for Mixtral/Qwen-MoE, sigmoid
    for DeepSeek-V3/Kimi-K2, both renormalised over the chosen k)."""
    scores = logits.sigmoid() if sigmoid else logits.softmax(-1)
    w, ids = scores.topk(top_k, dim=-1)
    return ids, w / w.sum(-1, keepdim=True)


class ReferenceModel:
    """The whole model in one process with full (unsharded) weights: the readable reference
    that every parallel run is compared against."""

    def __init__(self, cfg: RefConfig, seed: int, dtype: torch.dtype = torch.float64):
        self.cfg, self.w = cfg, Weights(cfg, seed, dtype)
        c = cfg
        self.embed = self.w.get("embed", c.vocab, c.hidden, scale=1.0)
        self.final_norm = 1.0 + self.w.get("final_norm", c.hidden, scale=0.1)
        self.head = self.w.get("lm_head", c.vocab, c.hidden)
        self.layers = []
        for i, kind in enumerate(c.layers):
            p = dict(self.w.attn(i), ffn_norm=1.0 + self.w.get(f"l{i}.ffn_norm", c.hidden, scale=0.1))
            if kind is LayerKind.MOE:
                p["router"] = self.w.get(f"l{i}.router", c.experts, c.hidden)
                p["experts"] = [self.w.ffn(f"l{i}.e{e}", c.hidden, c.expert_ffn) for e in range(c.experts)]
                if c.shared_ffn:
                    p["shared"] = self.w.ffn(f"l{i}.shared", c.hidden, c.shared_ffn)
            else:
                p["ffn"] = self.w.ffn(f"l{i}.ffn", c.hidden, c.ffn)
            self.layers.append(p)

    def generate(self, prompt: torch.Tensor, steps: int) -> tuple[list[int], list[torch.Tensor]]:
        """Greedy decoding of one sequence: the tokens and the logits of every step."""
        c = self.cfg
        ids, cache, out, logits = prompt, [None] * len(c.layers), [], []
        pos0 = 0
        for _ in range(steps):
            x = self.embed[ids]  # [T, D]
            pos = torch.arange(pos0, pos0 + len(ids))
            for i, p in enumerate(self.layers):
                y = rms_norm(x, p["norm"], c.eps)
                q = rope((y @ p["wq"].T).view(-1, c.heads, c.head_dim), pos, c.rope_theta)
                k = rope((y @ p["wk"].T).view(-1, c.kv_heads, c.head_dim), pos, c.rope_theta)
                v = (y @ p["wv"].T).view(-1, c.kv_heads, c.head_dim)
                if cache[i] is not None:
                    k, v = torch.cat([cache[i][0], k]), torch.cat([cache[i][1], v])
                cache[i] = (k, v)
                rep = c.heads // c.kv_heads  # GQA: each KV head serves `rep` query heads
                kk, vv = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
                s = torch.einsum("qhd,khd->hqk", q, kk) / c.head_dim ** 0.5
                mask = torch.arange(len(kk))[None, :] > pos[:, None]  # causal
                att = torch.einsum("hqk,khd->qhd", s.masked_fill(mask[None], float("-inf")).softmax(-1), vv)
                x = x + att.reshape(len(ids), -1) @ p["wo"].T
                h = rms_norm(x, p["ffn_norm"], c.eps)
                if "router" in p:
                    top, wts = route(h @ p["router"].T, c.top_k, c.sigmoid_router)
                    y = swiglu(h, p["shared"]) if "shared" in p else torch.zeros_like(h)
                    for t in range(len(ids)):
                        for e, wt in zip(top[t].tolist(), wts[t]):
                            y[t] += wt * swiglu(h[t:t + 1], p["experts"][e])[0]
                    x = x + y
                else:
                    x = x + swiglu(h, p["ffn"])
            step_logits = rms_norm(x[-1:], self.final_norm, c.eps) @ self.head.T
            nxt = int(step_logits.argmax(-1))
            out.append(nxt)
            logits.append(step_logits[0])
            pos0 += len(ids)
            ids = torch.tensor([nxt])
        return out, logits
