"""One engine's scheduler on one attention-dp rank: which requests an iteration carries.

Per iteration, as the engines schedule (EngineProfile.prefill_policy; sources in catalog/engines):
- mixed (vLLM V1, TensorRT-LLM in-flight batching): running requests first, each decoding one
  token; prompts being prefilled continue their chunk; then waiting requests are admitted in
  arrival order into what is left of the token budget (chunked when the engine chunks prompts,
  else a prompt must fit whole, except the iteration's first prompt, which runs whole beside the
  decodes: the closed form costs it so, cost.closed_loop, and the measured TTFTs of 8,192-token
  prompts under TensorRT-LLM's 8,192-token budget show no stall behind the decodes);
- separate (SGLang): when admissible prompts wait, the iteration prefills them (up to the prefill
  budget) and decoding pauses; otherwise every running request decodes.
KV cache (EngineProfile.kv_admission): an engine that reserves the whole length at admission
(TensorRT-LLM's GUARANTEED_NO_EVICT) admits a request only when its prompt plus output fits and
never preempts; one that holds what is in use (vLLM, SGLang) admits when the prompt fits and, when
a decode step finds no free token, preempts the latest admitted request, which later recomputes
its prompt and the tokens it had generated (vLLM's recompute preemption).
With speculative decoding (Policy.acceptance) a decoding request runs 1 + K positions per
iteration, which it takes of the budget and of the KV room, and keeps 1 + the run of drafts the
target accepts, drawn per request and iteration.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


ACCEPTANCE_SEED = 0
"""Seed of the generator that draws speculative decoding's accepted tokens (its own generator, so
that the request stream's draws do not depend on whether speculation is on)."""


def draft_tokens_accepted(rng: np.random.Generator, rates: tuple[float, ...], n: int, steps: int) -> np.ndarray:
    """Draft tokens accepted over ``steps`` iterations by each of ``n`` sequences: per iteration the
    run of leading draft positions the target accepts, position i with chance rates[i] given the
    earlier ones were (specs.speculative)."""
    if not rates or n == 0:
        return np.zeros(n, dtype=np.int64)
    out = np.zeros(n, dtype=np.int64)
    a = np.asarray(rates, dtype=float)
    for lo in range(0, steps, 256):  # in blocks, to bound the draws held at once
        k = min(256, steps - lo)
        hit = rng.random((k, n, a.size)) < a
        out += np.cumprod(hit, axis=2).sum(axis=(0, 2))
    return out


@dataclass(kw_only=True, slots=True)
class Requests:
    """Per-request state (arrays indexed by request id)."""

    isl: np.ndarray
    osl: np.ndarray
    send_s: np.ndarray
    arrive_s: np.ndarray
    """When the engine has it (send plus request and client overheads)."""
    cached: np.ndarray
    """Prompt tokens found in the prefix cache (WorkloadSpec.prefix_hit_rate): held, not computed."""
    to_prefill: np.ndarray
    """Prompt tokens still to prefill (the prompt and generated tokens again after a preemption,
    less the cached prefix)."""
    generated: np.ndarray
    kv_held: np.ndarray
    first_s: np.ndarray
    finish_s: np.ndarray
    preempted: np.ndarray
    client: np.ndarray
    """Closed loop: the client that sent it (-1 for open-loop arrivals)."""
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(ACCEPTANCE_SEED))
    """Speculative decoding: the draws of which draft tokens the target accepts."""

    @staticmethod
    def of(isl: np.ndarray, osl: np.ndarray, hit_rate: float = 0.0) -> "Requests":
        """Requests of ``isl`` prompt and ``osl`` output tokens; ``hit_rate`` of each prompt (rounded
        down, at most all but its last token) is found in the prefix cache."""
        n = isl.size
        nan = lambda: np.full(n, np.nan)  # noqa: E731
        prompt = isl.astype(np.int64)
        cached = np.minimum(np.floor(hit_rate * prompt).astype(np.int64), np.maximum(prompt - 1, 0))
        return Requests(isl=prompt, osl=np.maximum(osl.astype(np.int64), 1), send_s=nan(), arrive_s=nan(),
                        cached=cached, to_prefill=prompt - cached, generated=np.zeros(n, np.int64),
                        kv_held=np.zeros(n, np.int64), first_s=nan(), finish_s=nan(), preempted=np.zeros(n, np.int64),
                        client=np.full(n, -1, np.int64))


@dataclass(frozen=True, kw_only=True, slots=True)
class Policy:
    """The scheduler's settings for one rank (from the engine profile and the memory model)."""

    mixed: bool
    chunked: bool
    budget: int
    """Tokens per iteration (mixed: decode and prompt tokens together; separate: prompt tokens)."""
    max_running: int
    kv_tokens: int
    """KV-cache tokens one rank holds."""
    reserve_full: bool
    handoff: bool = False
    """A prefill-pool rank: a prompt, once prefilled, leaves with its KV cache for a decode instance."""
    acceptance: tuple[float, ...] = ()
    """Speculative decoding: per draft position, the chance the target accepts it given the earlier
    ones were (Speculative.rates); empty without it. A decode iteration then yields 1 + the accepted
    run of drafts per sequence."""
    adp_timeout_iters: int = 0
    """TensorRT-LLM attention-dp balancing (EngineProfile.attention_dp_balance): iterations new
    prompts may be held until every rank of the group has one; 0 when the engine does not balance."""
    adp_batching_iters: int = 0
    """Further iterations they are held once every rank has one (batching_wait_iters)."""
    recv_interval: int = 1
    """SGLang's receive interval (EngineProfile.recv_interval_iters): new requests are taken in once
    every this many decode iterations, at once after an iteration with prefill or when idle."""

    @property
    def most_tokens_per_step(self) -> int:
        return 1 + len(self.acceptance)


@dataclass(kw_only=True, slots=True)
class Plan:
    """What one rank does in one iteration."""

    decoding: np.ndarray
    """Requests decoding one token each."""
    chunks: dict[int, int]
    """Prompt tokens per request being prefilled."""
    admitted: int = 0
    preempted: int = 0

    @property
    def prefill_tokens(self) -> int:
        return sum(self.chunks.values())


NONE = np.zeros(0, dtype=np.int64)


@dataclass(kw_only=True, slots=True)
class Rank:
    """One attention-dp rank of one micro-batch: its queue, running requests and KV cache."""

    waiting: deque = field(default_factory=deque)
    running: list = field(default_factory=list)
    """Admitted requests in admission order (the last is preempted first)."""
    prefilling: list = field(default_factory=list)
    decoding: list = field(default_factory=list)
    kv_used: int = 0
    handed: list = field(default_factory=list)
    """Prefill pool: requests prefilled by the last iteration, to go to a decode instance."""

    @property
    def load(self) -> int:
        return len(self.waiting) + len(self.running)

    def _kv_need(self, r: Requests, i: int, pol: Policy) -> int:
        """KV tokens a request holds on admission: its prompt (the cached prefix included) and, after a
        preemption, what it had generated, or the whole context it brings from a prefill instance;
        plus the rest of its output where the engine reserves it."""
        held = r.cached[i] + r.to_prefill[i] if r.to_prefill[i] > 0 else r.isl[i] + r.generated[i]
        return int(held + (r.osl[i] - r.generated[i] if pol.reserve_full else 0))

    def has_prompt(self, r: Requests, pol: Policy, cutoff_s: float) -> bool:
        """A prompt this rank would schedule now: one mid-prefill, or a waiting one that reached the
        engine by ``cutoff_s`` and fits (batch limit and KV room)."""
        if self.prefilling:
            return True
        head = self.waiting[0] if self.waiting else None
        return head is not None and r.arrive_s[head] <= cutoff_s and r.to_prefill[head] > 0 \
            and self._admissible(r, pol, head)

    def _admissible(self, r: Requests, pol: Policy, i: int) -> bool:
        """Room for one more: under the batch limit, and its KV (whole length when reserved; else
        its prompt with a token for each decoding request's next step, so that admitting it does
        not force a preemption at once)."""
        room = 0 if pol.reserve_full else len(self.decoding) * pol.most_tokens_per_step
        return (len(self.running) < pol.max_running
                and self.kv_used + self._kv_need(r, i, pol) + room <= pol.kv_tokens)

    def _admit(self, r: Requests, pol: Policy, into: list) -> None:
        """The head of the queue joins the running requests (and ``into``: decoding or
        prefilling), holding its KV tokens."""
        i = self.waiting.popleft()
        self.running.append(i)
        into.append(i)
        r.kv_held[i] = self._kv_need(r, i, pol)
        self.kv_used += int(r.kv_held[i])

    def _preempt_for_decodes(self, r: Requests, pol: Policy) -> int:
        """Preempt the latest admitted requests until every decoding one has a free token
        (current-use KV); each goes back to the head of the queue to recompute."""
        out = 0
        while self.running and pol.kv_tokens - self.kv_used < len(self.decoding) * pol.most_tokens_per_step:
            i = self.running.pop()
            (self.decoding if r.to_prefill[i] == 0 else self.prefilling).remove(i)
            self.kv_used -= int(r.kv_held[i])
            r.kv_held[i] = 0
            r.to_prefill[i] = r.isl[i] + r.generated[i] - r.cached[i]
            r.preempted[i] += 1
            self.waiting.appendleft(i)
            out += 1
        return out

    def plan(self, r: Requests, pol: Policy, cutoff_s: float) -> Plan:
        """The iteration this rank runs; requests that reached the engine after ``cutoff_s`` wait."""
        preempted = 0
        head = self.waiting[0] if self.waiting else None
        prompt_ok = head is not None and r.arrive_s[head] <= cutoff_s and r.to_prefill[head] > 0
        prefill_only = not pol.mixed and bool(self.prefilling or (prompt_ok and self._admissible(r, pol, head)))
        # Decoding requests need a token each, unless this is a separate-policy prefill iteration.
        need = len(self.decoding) * pol.most_tokens_per_step
        if not (pol.reserve_full or prefill_only) and self.decoding and pol.kv_tokens - self.kv_used < need:
            preempted = self._preempt_for_decodes(r, pol)
        decoding = [] if prefill_only else self.decoding  # separate policy: decoding pauses for prompts
        left = pol.budget - (len(decoding) * pol.most_tokens_per_step if pol.mixed else 0)
        chunks: dict[int, int] = {}
        for i in self.prefilling:
            if left <= 0:
                break
            c = int(min(r.to_prefill[i], left))
            chunks[i] = c
            left -= c
        admitted = 0
        while self.waiting and r.arrive_s[self.waiting[0]] <= cutoff_s:
            i = self.waiting[0]
            if not self._admissible(r, pol, i):
                break
            if r.to_prefill[i] == 0:  # its KV came from a prefill instance: it decodes at once
                self._admit(r, pol, self.decoding)
                admitted += 1
                continue
            if left <= 0:
                break
            whole = int(r.to_prefill[i])
            if not pol.chunked and whole > left and chunks:
                break  # an unchunked prompt waits for an iteration it fits whole, or that has no other prompt
            c = whole if not pol.chunked else min(whole, left)
            self._admit(r, pol, self.prefilling)
            chunks[i] = c
            left -= c
            admitted += 1
        dec = np.fromiter(decoding, dtype=np.int64, count=len(decoding)) if decoding else NONE
        return Plan(decoding=dec, chunks=chunks, admitted=admitted, preempted=preempted)

    def finish(self, r: Requests, plan: Plan, pol: Policy, end_s: float, steps: int = 1) -> np.ndarray:
        """Apply ``steps`` identical iterations ending at ``end_s``; the requests that finished."""
        started = []
        for i, c in plan.chunks.items():
            r.to_prefill[i] -= c
            if r.to_prefill[i] == 0 and pol.handoff:  # off to a decode instance with its first token
                r.generated[i] += 1
                self.prefilling.remove(i)
                self.running.remove(i)
                self.kv_used -= int(r.kv_held[i])
                r.kv_held[i] = 0
                self.handed.append(i)
            elif r.to_prefill[i] == 0:  # the prompt is in: its next token comes out of this pass
                if np.isnan(r.first_s[i]):
                    r.first_s[i] = end_s
                r.generated[i] += 1
                if not pol.reserve_full:
                    r.kv_held[i] += 1
                    self.kv_used += 1
                self.prefilling.remove(i)
                self.decoding.append(i)
                started.append(i)
        dec = plan.decoding
        if dec.size:
            made = steps + draft_tokens_accepted(r.rng, pol.acceptance, int(dec.size), steps)
            made = np.minimum(made, r.osl[dec] - r.generated[dec])  # a request stops at its length
            r.generated[dec] += made
            if not pol.reserve_full:
                r.kv_held[dec] += made
                self.kv_used += int(made.sum())
        ids = np.concatenate([dec, np.asarray(started, dtype=np.int64)]) if started else dec
        done = ids[r.generated[ids] >= r.osl[ids]]
        if done.size:
            r.finish_s[done] = end_s
            self.kv_used -= int(r.kv_held[done].sum())
            r.kv_held[done] = 0
            gone = set(done.tolist())
            self.running = [i for i in self.running if i not in gone]
            self.decoding = [i for i in self.decoding if i not in gone]
        return done
