"""One rank's share of the model, executed exactly as the layout's rank map says.

Attention: tensor parallel over tp (column-parallel Q/K/V by heads, KV heads split or replicated,
row-parallel output, all-reduce). Attention data parallel: each dp rank serves its own requests.
MoE: each tp rank routes its 1/tp share of its dp rank's tokens; tokens go by all-to-all over
the stage's tp x dp GPUs to the ep rank holding each chosen expert (to all etp slices of it),
expert outputs come back by the reverse all-to-all and are summed with the router weights;
shared experts and dense FFNs are tensor parallel like attention. Pipeline: hidden states go to
the same local rank of the next stage; the sampled tokens come back to the first stage.
"""

from __future__ import annotations

import torch

from meshplan.execute.comm import Comm
from meshplan.execute.model import RefConfig, Weights, rms_norm, rope, route, swiglu
from meshplan.strategy.layout import Layout
from meshplan.strategy.mesh import stage_layers


def _rows(w: torch.Tensor, start: int, size: int) -> torch.Tensor:
    return w[start:start + size]


class Runner:
    def __init__(self, cfg: RefConfig, lay: Layout, comm: Comm, seed: int, dtype: torch.dtype):
        self.cfg, self.lay, self.comm, self.dtype = cfg, lay, comm, dtype
        c = comm.c
        self.c = c
        self.layers = list(stage_layers(len(cfg.layers), lay.pp)[c.pp])
        self.first, self.last = c.pp == 0, c.pp == lay.pp - 1
        w = Weights(cfg, seed, dtype)
        h, tp = cfg.head_dim, lay.tp
        self.nh = cfg.heads // tp
        self.kh = max(cfg.kv_heads // tp, 1)
        kv_first = (c.tp * cfg.kv_heads // tp) if cfg.kv_heads < tp else c.tp * self.kh
        self.group = cfg.heads // cfg.kv_heads  # query heads per KV head
        self.embed = w.get("embed", cfg.vocab, cfg.hidden, scale=1.0)
        self.final_norm = 1.0 + w.get("final_norm", cfg.hidden, scale=0.1)
        v = cfg.vocab // tp
        self.head = _rows(w.get("lm_head", cfg.vocab, cfg.hidden), c.tp * v, v)
        self.p = {}
        for i in self.layers:
            a = w.attn(i)
            p = {"attn_norm": a["norm"], "ffn_norm": 1.0 + w.get(f"l{i}.ffn_norm", cfg.hidden, scale=0.1),
                 "wq": _rows(a["wq"], c.tp * self.nh * h, self.nh * h),
                 "wk": _rows(a["wk"], kv_first * h, self.kh * h), "wv": _rows(a["wv"], kv_first * h, self.kh * h),
                 "wo": a["wo"][:, c.tp * self.nh * h:(c.tp + 1) * self.nh * h]}
            if cfg.layers[i] == "moe":
                p["router"] = w.get(f"l{i}.router", cfg.experts, cfg.hidden)
                per = cfg.experts // lay.ep
                fe = cfg.expert_ffn // lay.etp
                p["experts"] = {e: self._slice(w.ffn(f"l{i}.e{e}", cfg.hidden, cfg.expert_ffn), c.etp * fe, fe)
                                for e in range(c.ep * per, (c.ep + 1) * per)}
                if cfg.shared_ffn:
                    fs = cfg.shared_ffn // tp
                    p["shared"] = self._slice(w.ffn(f"l{i}.shared", cfg.hidden, cfg.shared_ffn), c.tp * fs, fs)
            else:
                f = cfg.ffn // tp
                p["ffn"] = self._slice(w.ffn(f"l{i}.ffn", cfg.hidden, cfg.ffn), c.tp * f, f)
            self.p[i] = p
        self.cache: dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}

    @staticmethod
    def _slice(ffn: dict, start: int, size: int) -> dict:
        """Column-parallel gate/up (rows of the weight), row-parallel down (its columns)."""
        return {"gate": _rows(ffn["gate"], start, size), "up": _rows(ffn["up"], start, size),
                "down": ffn["down"][:, start:start + size]}

    # -- one pass -------------------------------------------------------------------------
    def forward(self, reqs: list[tuple[int, torch.Tensor, int]]) -> torch.Tensor | None:
        """Run new tokens of this rank's requests: (request id, token ids [t], start position).
        Returns the next token of each request (on the first stage after the round trip), or
        None where this rank does not need it."""
        lay = self.lay
        sizes = [len(t) for _, t, _ in reqs]
        total = sum(sizes)
        if self.first:
            ids = torch.cat([t for _, t, _ in reqs]) if reqs else torch.empty(0, dtype=torch.int64)
            x = self.embed[ids]
        else:
            x = self.comm.recv((total, self.cfg.hidden), self.dtype, self.comm.rank - lay.gpus_per_stage)
        for i in self.layers:
            x = x + self._attention(i, x, reqs, sizes)
            h = rms_norm(x, self.p[i]["ffn_norm"], self.cfg.eps)
            x = x + (self._moe(i, h) if self.cfg.layers[i] == "moe" else self._dense(i, h))
        if not self.last:
            self.comm.send(x, self.comm.rank + lay.gpus_per_stage)
            if self.first:
                return self.comm.recv((len(reqs),), torch.int64, self.comm.rank + (lay.pp - 1) * lay.gpus_per_stage)
            return None
        ends = torch.cumsum(torch.tensor(sizes, dtype=torch.int64), 0) - 1
        last = rms_norm(x[ends], self.final_norm, self.cfg.eps) if reqs else x[:0]
        logits = self.comm.tp_all_gather_last(last @ self.head.T)
        self.last_logits = logits
        nxt = logits.argmax(-1)
        if not self.first:
            self.comm.send(nxt, self.comm.rank - (lay.pp - 1) * lay.gpus_per_stage, kind="pp_tokens")
        return nxt

    def _attention(self, i: int, x: torch.Tensor, reqs, sizes) -> torch.Tensor:
        p, cfg, h = self.p[i], self.cfg, self.cfg.head_dim
        y = rms_norm(x, p["attn_norm"], cfg.eps)
        q = (y @ p["wq"].T).view(-1, self.nh, h)
        k = (y @ p["wk"].T).view(-1, self.kh, h)
        v = (y @ p["wv"].T).view(-1, self.kh, h)
        out, start = [], 0
        for (rid, _, pos0), n in zip(reqs, sizes):
            pos = torch.arange(pos0, pos0 + n)
            qi, ki, vi = rope(q[start:start + n], pos, cfg.rope_theta), rope(k[start:start + n], pos, cfg.rope_theta), v[start:start + n]
            layer_cache = self.cache.setdefault(rid, {})
            if i in layer_cache:
                pk, pv = layer_cache[i]
                ki, vi = torch.cat([pk, ki]), torch.cat([pv, vi])
            layer_cache[i] = (ki, vi)
            out.append(self._core(qi, ki, vi, pos0))
            start += n
        o = torch.cat(out) if out else q.new_zeros((0, self.nh, h))
        return self.comm.tp_all_reduce(o.reshape(-1, self.nh * h) @ p["wo"].T, "tp_all_reduce_attn")

    def _core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos0: int) -> torch.Tensor:
        """Causal attention of new queries [n, nh, H] over cached keys [S, kh, H]; each query
        head reads its KV head (GQA groups, or the one replicated head when tp > K)."""
        n, s = q.shape[0], k.shape[0]
        rep = self.nh // self.kh if self.nh >= self.kh else 1
        k = k.repeat_interleave(rep, dim=1)[:, : self.nh]
        v = v.repeat_interleave(rep, dim=1)[:, : self.nh]
        scores = torch.einsum("qhd,khd->hqk", q, k) / (q.shape[-1] ** 0.5)
        qpos = torch.arange(pos0, pos0 + n)[:, None]
        kpos = torch.arange(s)[None, :]
        scores = scores.masked_fill((kpos > qpos)[None], float("-inf"))
        return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v)

    def _dense(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self.comm.tp_all_reduce(swiglu(h, self.p[i]["ffn"]), "tp_all_reduce_ffn")

    def _moe(self, i: int, h: torch.Tensor) -> torch.Tensor:
        lay, cfg, p, c = self.lay, self.cfg, self.p[i], self.c
        mine = torch.tensor_split(torch.arange(h.shape[0]), lay.tp)[c.tp]
        hs = h[mine]
        ids, weights = route(hs @ p["router"].T, cfg.top_k, cfg.sigmoid_router)
        per = cfg.experts // lay.ep
        # Pairs (token, choice) -> every etp slice of the chosen expert's ep rank.
        tok = torch.arange(hs.shape[0]).repeat_interleave(cfg.top_k)
        exp = ids.reshape(-1)
        dest = [(e // per) * lay.etp + j for e in exp.tolist() for j in range(lay.etp)]
        tok = tok.repeat_interleave(lay.etp)
        exp = exp.repeat_interleave(lay.etp)
        order = sorted(range(len(dest)), key=lambda n: dest[n])
        counts = [0] * lay.gpus_per_stage
        for d in dest:
            counts[d] += 1
        order_t = torch.tensor(order, dtype=torch.int64)
        rows, recv_counts = self.comm.all_to_all(hs[tok[order_t]] if order else hs[:0], counts, "ep_dispatch")
        meta, _ = self.comm.all_to_all(exp[order_t][:, None] if order else exp[:0][:, None], counts, "ep_dispatch_ids")
        out = torch.zeros_like(rows)
        for e in meta[:, 0].unique().tolist():
            sel = meta[:, 0] == e
            out[sel] = swiglu(rows[sel], p["experts"][e])
        back, _ = self.comm.all_to_all(out, recv_counts, "ep_combine")
        y = torch.zeros_like(hs)
        wflat = weights.reshape(-1).repeat_interleave(lay.etp)
        y.index_add_(0, tok[order_t], back * wflat[order_t][:, None]) if order else None
        full = swiglu(h, p["shared"]) if "shared" in p else torch.zeros_like(h)
        full[mine] += y
        return self.comm.tp_all_reduce(full, "tp_all_reduce_moe")
