"""Queueing: how long a request waits for a prefill server that others also use (the one owner).

Prompts reaching a prefill pool at random moments and served one after another in a fixed time
form an M/D/1 queue (Poisson arrivals, deterministic service, one server). Its mean wait is the
Pollaczek-Khinchine mean-value formula of the M/G/1 queue, W = rho x s x (1 + C^2) / (2 (1 - rho)),
with rho = arrival rate / service rate and C the service time's coefficient of variation, 0 when
every service takes s (Kleinrock, Queueing Systems vol. 1, 1975, chapter 5): W = rho x s / (2 (1 - rho)).
A TTFT target bounds the utilisation the queue may run at (``md1_rho_for_latency``, its inverse).
An open system (arrivals at a stated rate) diverges as rho reaches 1 (``md1_wait_s``); a closed
loop cannot queue without bound, since its clients stop sending, so its wait is read at RHO_MAX
at most (``md1_wait_capped_s``, and ``loop_rate``).
"""

from __future__ import annotations

import numpy as np

RHO_MAX = 0.95
"""Utilisation at which a closed loop's M/D/1 wait is capped: a closed loop cannot queue without
bound (the clients stop sending), so the wait is bounded by the requests in flight."""

BISECTIONS = 40
"""Halvings of the interval that holds a closed loop's rate (``loop_rate``): 2^-40 of the prefill
pool's capacity."""


def md1_wait_s(rho: float, service_s: float) -> float:
    """Mean wait in an open M/D/1 queue, rho x s / (2 (1 - rho)); infinite from rho = 1 (arrivals
    faster than service). Hand check: rho = 0.5, s = 1 s gives 0.5 s; rho = 0.8, s = 0.2 s gives
    0.8 x 0.2 / 0.4 = 0.4 s."""
    return rho * service_s / (2.0 * (1.0 - rho)) if rho < 1.0 else float("inf")


def md1_rho_for_latency(target_s: float, service_s: float) -> float:
    """Highest utilisation at which an open M/D/1 queue's service plus mean wait stays within
    ``target_s``: the inverse of md1_wait_s. With W = rho x s / (2 (1 - rho)) (Pollaczek-Khinchine,
    deterministic service), s + W <= T reads rho / (2 (1 - rho)) <= x with x = T / s - 1, so
    rho <= 2x / (1 + 2x). 0 when T <= s (no queue meets it). Hand check: s = 1 s, T = 2 s gives
    x = 1 and rho 2/3, where the wait is (2/3) / (2 / 3) = 1 s and s + W = 2 s = T."""
    x = target_s / service_s - 1.0
    return 2.0 * x / (1.0 + 2.0 * x) if x > 0.0 else 0.0


def md1_wait_capped_s(rho, service_s):
    """The same wait in a closed loop (arrays), rho capped at RHO_MAX. Hand check: rho = 0.5, s = 1
    gives 0.5; any rho above 0.95 gives 0.95 / 0.1 = 9.5 service times."""
    rho = np.clip(np.asarray(rho, dtype=float), 0.0, RHO_MAX)
    return rho * service_s / (2.0 * (1.0 - rho))


def loop_rate(requests, life_s, service_s, capacity):
    """Requests per second a closed loop of ``requests`` sends through a queue of M/D/1 service
    ``service_s`` and ``capacity`` per second, each request living ``life_s`` beside its wait: the
    root of rate x (life_s + md1_wait_capped_s(rate / capacity, service_s)) = requests (Little's
    law; the left side grows with the rate), at most RHO_MAX x capacity, found by bisection.
    Hand check: 2 requests, life 1 s, service 0.1 s, capacity 10/s: at rate 1.9 the wait is
    0.19 x 0.1 / 1.62 = 0.0117 s, and 1.9 x 1.0117 = 1.922 < 2; the root is 1.9757/s."""
    requests, life_s = np.asarray(requests, dtype=float), np.asarray(life_s, dtype=float)
    lo = np.zeros(np.broadcast(requests, life_s, service_s, capacity).shape)
    hi = lo + np.asarray(capacity, dtype=float) * RHO_MAX
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2.0
        short = mid * (life_s + md1_wait_capped_s(mid / capacity, service_s)) < requests
        lo, hi = np.where(short, mid, lo), np.where(short, hi, mid)
    return (lo + hi) / 2.0
