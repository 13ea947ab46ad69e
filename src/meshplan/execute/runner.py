"""One rank's share of the model, executed exactly as the layout's rank map says.

Attention: tensor parallel over tp (column-parallel Q/K/V by heads, KV heads split or replicated,
row-parallel output, all-reduce). Attention data parallel: each dp rank serves its own requests.
MoE: each tp rank routes its 1/tp share of its dp rank's tokens; tokens go by all-to-all over
the stage's tp x dp GPUs to the ep ranks holding their chosen experts (to all etp slices of
each; once per rank in the prefill, once per expert in decode, as DeepEP's normal and
low-latency kernels do), the receivers weight and sum their experts' outputs, etp slices
reduce-scatter their partial sums, and the rows come back by the reverse all-to-all;
shared experts and dense FFNs are tensor parallel like attention. Pipeline: hidden states go to
the same local rank of the next stage; the sampled tokens come back to the first stage.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch

from meshplan.execute.comm import Comm
from meshplan.execute.model import RefConfig, Weights, WeightShapes, rms_norm, rope, route, swiglu
from meshplan.strategy.layout import Layout
from meshplan.specs.model import LayerKind
from meshplan.specs.params import kv_heads_per_rank
from meshplan.strategy.mesh import coords_of, expert_slots_per_rank, stage_layers


def rank_weight_bytes(cfg: RefConfig, lay: Layout, rank: int, itemsize: int) -> int:
    """Bytes of the weights ``rank`` holds under ``lay``: the Runner's own shards, built as shapes
    only (model.WeightShapes), so that the count and the tensors are one code; checked before any
    process starts, so a full-size model that cannot fit is refused, not run out of memory."""
    shapes = Runner(cfg, lay, SimpleNamespace(c=coords_of(rank, lay)), 0, torch.float32, weights=WeightShapes)
    return sum(t.numel() for t in shapes.weights()) * itemsize


class Runner:
    def __init__(self, cfg: RefConfig, lay: Layout, comm: Comm, seed: int, dtype: torch.dtype,
                 progress: Callable[[str], None] = lambda _: None, weights: type[Weights] = Weights):
        """``progress`` hears each layer as its weights are drawn (the launcher's watchdog reads
        it: drawing a full-size shard can take minutes); ``weights`` draws them (WeightShapes: shapes
        only, for rank_weight_bytes)."""
        self.cfg, self.lay, self.comm, self.dtype = cfg, lay, comm, dtype
        c = comm.c
        self.c = c
        self.layers = list(stage_layers(len(cfg.layers), lay.pp)[c.pp])
        self.first, self.last = c.pp == 0, c.pp == lay.pp - 1
        w = weights(cfg, seed, dtype)
        tp = lay.tp
        self.nh = cfg.heads // tp
        self.kh = kv_heads_per_rank(cfg.kv_heads, tp)
        kv_first = (c.tp * cfg.kv_heads // tp) if cfg.kv_heads < tp else c.tp * self.kh
        # The embedding on the first stage, the vocabulary-parallel LM head on the last.
        self.embed = w.get("embed", cfg.vocab, cfg.hidden, scale=1.0) if self.first else None
        if self.last:
            v = cfg.vocab // tp
            self.final_norm = 1.0 + w.get("final_norm", cfg.hidden, scale=0.1)
            self.head = w.get("lm_head", cfg.vocab, cfg.hidden, rows=slice(c.tp * v, (c.tp + 1) * v))
        self.p = {}
        for i in self.layers:
            progress(f"weights of layer {i}")
            a = w.attn(i, q=slice(c.tp * self.nh, (c.tp + 1) * self.nh), kv=slice(kv_first, kv_first + self.kh))
            p = {"attn_norm": a["norm"], "ffn_norm": 1.0 + w.get(f"l{i}.ffn_norm", cfg.hidden, scale=0.1),
                 "wq": a["wq"], "wk": a["wk"], "wv": a["wv"], "wo": a["wo"]}
            if cfg.layers[i] is LayerKind.MOE:
                p["router"] = w.get(f"l{i}.router", cfg.experts, cfg.hidden)
                per = expert_slots_per_rank(cfg.experts, 0, lay.ep)  # no replicas: launch refuses them
                fe = cfg.expert_ffn // lay.etp
                p["experts"] = {e: w.ffn(f"l{i}.e{e}", cfg.hidden, cfg.expert_ffn, slice(c.etp * fe, (c.etp + 1) * fe))
                                for e in range(c.ep * per, (c.ep + 1) * per)}
                if cfg.shared_ffn:
                    fs = cfg.shared_ffn // tp
                    p["shared"] = w.ffn(f"l{i}.shared", cfg.hidden, cfg.shared_ffn, slice(c.tp * fs, (c.tp + 1) * fs))
            else:
                f = cfg.ffn // tp
                p["ffn"] = w.ffn(f"l{i}.ffn", cfg.hidden, cfg.ffn, slice(c.tp * f, (c.tp + 1) * f))
            self.p[i] = p
        self.cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        """Per layer: keys and values [B, S, kh, H] of this rank's requests."""

    def weights(self) -> list[torch.Tensor]:
        """Every weight tensor this rank holds."""
        out = [t for t in (self.embed, getattr(self, "head", None), getattr(self, "final_norm", None)) if t is not None]

        def walk(v):
            if isinstance(v, torch.Tensor):
                out.append(v)
            else:
                for x in v.values():
                    walk(x)

        for p in self.p.values():
            walk(p)
        return out

    # -- one pass -------------------------------------------------------------------------
    def forward(self, reqs: list[tuple[int, torch.Tensor, int]], prefill: bool) -> torch.Tensor | None:
        """Run new tokens of this rank's requests: (request id, token ids [t], start position).
        The requests move in lockstep (same new-token count and start position: the run gives
        every request --isl prompt tokens), so attention is batched over them. ``prefill`` picks
        the MoE dispatch kind and must be the same on every rank (a rank may have no requests).
        Returns the next token of each request (on the first stage after the round trip), or
        None where this rank does not need it."""
        lay = self.lay
        n = len(reqs[0][1]) if reqs else 0
        pos0 = reqs[0][2] if reqs else 0
        if any(len(t) != n or p != pos0 for _, t, p in reqs):
            raise ValueError("the requests of one rank must have the same length and position (lockstep)")
        batch, total = len(reqs), len(reqs) * n
        if self.first:
            ids = torch.cat([t for _, t, _ in reqs]) if reqs else torch.empty(0, dtype=torch.int64)
            x = self.embed[ids]
        else:
            x = self.comm.recv((total, self.cfg.hidden), self.dtype, self.comm.rank - lay.gpus_per_stage)
        for i in self.layers:
            x = x + self._attention(i, x, batch, n, pos0)
            h = rms_norm(x, self.p[i]["ffn_norm"], self.cfg.eps)
            x = x + (self._moe(i, h, prefill) if self.cfg.layers[i] is LayerKind.MOE else self._dense(i, h))
        if not self.last:
            self.comm.send(x, self.comm.rank + lay.gpus_per_stage)
            if self.first:
                return self.comm.recv((batch,), torch.int64, self.comm.rank + (lay.pp - 1) * lay.gpus_per_stage)
            return None
        last = rms_norm(x.view(batch, n, -1)[:, -1], self.final_norm, self.cfg.eps) if reqs else x[:0]
        logits = self.comm.tp_all_gather_last(last @ self.head.T)
        self.last_logits = logits
        nxt = logits.argmax(-1)
        if not self.first:
            self.comm.send(nxt, self.comm.rank - (lay.pp - 1) * lay.gpus_per_stage, kind="pp_tokens")
        return nxt

    def _attention(self, i: int, x: torch.Tensor, batch: int, n: int, pos0: int) -> torch.Tensor:
        """Attention of ``batch`` sequences of ``n`` new tokens at positions pos0.. over the KV
        cache [B, S, kh, H] of this layer; each query head reads its KV head (GQA groups, or the
        one replicated head when tp > K)."""
        p, cfg, h = self.p[i], self.cfg, self.cfg.head_dim
        y = rms_norm(x, p["attn_norm"], cfg.eps)
        pos = torch.arange(pos0, pos0 + n).repeat(batch)
        q = rope((y @ p["wq"].T).view(-1, self.nh, h), pos, cfg.rope_theta).view(batch, n, self.nh, h)
        k = rope((y @ p["wk"].T).view(-1, self.kh, h), pos, cfg.rope_theta).view(batch, n, self.kh, h)
        v = (y @ p["wv"].T).view(batch, n, self.kh, h)
        if i in self.cache:
            k, v = torch.cat([self.cache[i][0], k], 1), torch.cat([self.cache[i][1], v], 1)
        self.cache[i] = (k, v)
        rep = self.nh // self.kh if self.nh >= self.kh else 1
        k = k.repeat_interleave(rep, dim=2)[:, :, : self.nh]
        v = v.repeat_interleave(rep, dim=2)[:, :, : self.nh]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / (h ** 0.5)
        causal = torch.arange(k.shape[1])[None, :] > torch.arange(pos0, pos0 + n)[:, None]
        o = torch.einsum("bhqk,bkhd->bqhd", scores.masked_fill(causal, float("-inf")).softmax(-1), v)
        return self.comm.tp_all_reduce(o.reshape(-1, self.nh * h) @ p["wo"].T, "tp_all_reduce_attn")

    def _dense(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.comm.tp_all_reduce(swiglu(h, self.p[i]["ffn"]), "tp_all_reduce_ffn")

    def _moe(self, i: int, h: torch.Tensor, prefill: bool) -> torch.Tensor:
        """Routed experts by dispatch and combine over the stage's GPUs, as DeepEP does: in the
        prefill a token goes once to each ep rank holding any of its chosen experts (normal
        kernels); in decode once per chosen expert (low-latency kernels). Every etp slice of
        that rank gets a copy. The receiver applies the router weights and sums its experts'
        outputs per row; with etp > 1 the slices reduce-scatter their partial sums and each
        returns 1/etp of the row's columns; the sender adds what comes back."""
        lay, cfg, p, c = self.lay, self.cfg, self.p[i], self.c
        mine = torch.tensor_split(torch.arange(h.shape[0]), lay.tp)[c.tp]
        hs = h[mine]
        ids, weights = route(hs @ p["router"].T, cfg.top_k, cfg.sigmoid_router)
        per, k = expert_slots_per_rank(cfg.experts, 0, lay.ep), cfg.top_k
        tok = torch.arange(hs.shape[0]).repeat_interleave(k)
        exp, wts, ep_rank = ids.reshape(-1), weights.reshape(-1), ids.reshape(-1) // per
        if prefill:  # one row per (token, ep rank); k slots of (expert, weight), -1 where elsewhere
            rows_key, slot_row = torch.unique(tok * lay.ep + ep_rank, return_inverse=True)
            row_tok, row_rank = rows_key // lay.ep, rows_key % lay.ep
            eid = torch.full((rows_key.numel(), k), -1, dtype=torch.int64)
            ew = torch.zeros((rows_key.numel(), k), dtype=hs.dtype)
            slot = torch.arange(k).repeat(hs.shape[0])
            eid[slot_row, slot], ew[slot_row, slot] = exp, wts
        else:  # one row per (token, chosen expert)
            row_tok, row_rank, eid, ew = tok, ep_rank, exp[:, None], wts[:, None]
        # Every etp slice of the destination rank, grouped by destination (stable: token order).
        row_tok, eid, ew = (t.repeat_interleave(lay.etp, 0) for t in (row_tok, eid, ew))
        dest = row_rank.repeat_interleave(lay.etp) * lay.etp + torch.arange(lay.etp).repeat(row_rank.numel())
        order = torch.sort(dest, stable=True).indices
        counts = torch.bincount(dest, minlength=lay.gpus_per_stage).tolist()
        # Expert ids and weights ride as extra columns (ids exact in float32/64 below 2**24).
        meta_cols = 2 * eid.shape[1]
        sent = torch.cat([hs[row_tok[order]], eid[order].to(hs.dtype), ew[order]], 1)
        got, recv_counts = self.comm.all_to_all(sent, counts, "ep_dispatch", tail=("ep_dispatch_meta", meta_cols))
        width = eid.shape[1]
        rows, r_eid, r_ew = got[:, :-meta_cols], got[:, -meta_cols:-width].long(), got[:, -width:]
        out = torch.zeros_like(rows)
        for e in r_eid[r_eid >= 0].unique().tolist():
            hit = r_eid == e
            sel = hit.any(1)
            out[sel] += (r_ew * hit).sum(1)[sel, None] * swiglu(rows[sel], p["experts"][e])
        # etp > 1: the slices sum their partial outputs and each returns 1/etp of the columns.
        back, _ = self.comm.all_to_all(self.comm.etp_reduce_scatter(out), recv_counts, "ep_combine")
        y = torch.zeros_like(hs)
        block = row_tok[order] * lay.etp + dest[order] % lay.etp  # (token, column block)
        y.view(-1, cfg.hidden // lay.etp).index_add_(0, block, back)
        full = swiglu(h, p["shared"]) if "shared" in p else torch.zeros_like(h)
        full[mine] += y
        return self.comm.tp_all_reduce(full, "tp_all_reduce_moe")
