"""Virtual-clock replay: a closed-loop benchmark against a simulated engine, instantly.

Like genai-bench at a fixed concurrency: ``concurrency`` users each send a request,
wait for it to finish, and send the next one, until ``num_requests`` were sent.
Time is virtual: each engine step advances the clock by its simulated duration, so
a run that would take minutes on a GPU takes a fraction of a second.

    >>> from autotune.sim.settings import build_engine
    >>> eng = build_engine({}, model="llama-3.1-8b", gpu="h200_sxm", dtype="fp8")
    >>> recs = replay_closed_loop(eng, concurrency=4, num_requests=8,
    ...                           sample_lengths=lambda rng: (512, 64))
    >>> len(recs), all(r.ok for r in recs)
    (8, True)
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autotune.sim.types import SimRequest

# Decode steps the virtual clock may fuse when nothing else can happen in between.
MAX_FUSED_DECODE_STEPS = 1 << 20


@dataclass
class RequestRecord:
    """One request as a benchmark client saw it (absolute virtual seconds)."""

    rid: str
    input_tokens: int
    output_tokens: int
    start_s: float
    first_token_s: float | None
    end_s: float | None
    ok: bool
    cached_tokens: int = 0
    user: int = 0

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.start_s

    @property
    def e2e_s(self) -> float | None:
        return None if self.end_s is None else self.end_s - self.start_s

    @property
    def tpot_s(self) -> float | None:
        """genai-bench's TPOT: (e2e - ttft) / (output_tokens - 1)."""
        if not self.ok or self.output_tokens <= 1 or self.ttft_s is None or self.e2e_s is None:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def replay_closed_loop(
    engine: Any,
    *,
    concurrency: int,
    num_requests: int,
    sample_lengths: Callable[[random.Random], tuple[int, int]],
    seed: int = 0,
    max_time_s: float | None = None,
    sample_prefix: Callable[[random.Random], tuple[int, str | None]] | None = None,
    spawn_rate: float | None = None,
) -> list[RequestRecord]:
    """Drive ``engine`` with ``concurrency`` closed-loop users; return one record per request.

    ``sample_lengths(rng)`` gives (input tokens, output tokens) of each request;
    ``sample_prefix(rng)``, if given, gives (shared prefix tokens, prefix name) for
    the prefix-cache model. Users start at ``spawn_rate`` users per second; by
    default all at time 0, as genai-bench's users do (it asks locust for
    spawn_rate = concurrency, and locust's dispatcher then starts the whole batch in
    one iteration: seen as N requests arriving within milliseconds at the server). Requests still in flight at ``max_time_s``
    come back with ``ok=False`` (genai-bench drops them). Deterministic for a seed.
    """
    if concurrency < 1 or num_requests < 0:
        raise ValueError("concurrency must be >= 1 and num_requests >= 0")
    rng = random.Random(seed)
    if hasattr(engine, "token_event_interval"):
        engine.token_event_interval = 0  # the virtual clock needs no streaming progress
    records: dict[str, RequestRecord] = {}
    order: list[str] = []
    sent = 0
    # SimEngine can fuse quiet decode steps; other engines get plain step(now) calls.
    fused = MAX_FUSED_DECODE_STEPS if _accepts(engine.step, "max_decode_steps") else 0

    def send(user: int, t: float) -> None:
        nonlocal sent
        isl, osl = sample_lengths(rng)
        plen, pkey = sample_prefix(rng) if sample_prefix is not None else (0, None)
        rid = f"req-{sent}"
        sent += 1
        records[rid] = RequestRecord(rid, int(isl), 0, t, None, None, False, user=user)
        order.append(rid)
        engine.add(
            SimRequest(
                rid=rid,
                input_len=int(isl),
                output_len=int(osl),
                arrival=t,
                prefix_len=plen,
                prefix_key=pkey,
            )
        )

    # user i sends its first request at i / spawn_rate seconds (all at 0 by default).
    rate = float(spawn_rate) if spawn_rate is not None else float("inf")
    starts = [
        user / rate if 0 < rate < float("inf") else 0.0
        for user in range(min(concurrency, num_requests))
    ]
    next_user = 0
    now = 0.0
    while next_user < len(starts) and starts[next_user] <= now:
        send(next_user, starts[next_user])
        next_user += 1
    while engine.has_work() or next_user < len(starts):
        if not engine.has_work():
            now = starts[next_user]  # idle until the next user spawns
        while next_user < len(starts) and starts[next_user] <= now:
            send(next_user, starts[next_user])
            next_user += 1
        if max_time_s is not None and now >= max_time_s:
            break
        if fused:
            # Never fuse decode steps across a pending user spawn.
            out = engine.step(now, fused if next_user >= len(starts) else 1)
        else:
            out = engine.step(now)
        now += out.duration_s
        if out.kind == "idle" and not out.events:
            break  # nothing can run: never spin
        for ev in out.events:
            rec = records.get(ev.rid)
            if rec is None or (max_time_s is not None and ev.time > max_time_s):
                continue  # after the time limit the client has stopped listening
            if ev.kind == "first_token":
                rec.first_token_s = ev.time
                rec.cached_tokens = ev.cached_tokens
            elif ev.kind in ("finished", "aborted"):
                rec.end_s = ev.time
                rec.output_tokens = ev.output_tokens
                rec.ok = ev.kind == "finished"
                if sent < num_requests and (max_time_s is None or ev.time < max_time_s):
                    send(rec.user, ev.time)
    return [records[rid] for rid in order]
