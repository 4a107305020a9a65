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

import dataclasses
import heapq
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
    sample_blocks: Callable[[random.Random], tuple] | None = None,
    on_step: Callable[[float], None] | None = None,
) -> list[RequestRecord]:
    """Drive ``engine`` with ``concurrency`` closed-loop users; return one record per request.

    ``sample_lengths(rng)`` gives (input tokens, output tokens) of each request;
    ``sample_prefix(rng)``, if given, gives (shared prefix tokens, prefix name) for
    the prefix-cache model; ``sample_blocks(rng)``, if given, the token blocks of a
    real prompt (``autotune.sim.prefix``). If the engine has an output path
    (``engine.frontend``, a ``autotune.sim.frontend.FrontEnd``), the client sees each
    step's first tokens and finishes when that path has streamed them, and sends its
    next request then. Users start at ``spawn_rate`` users per second; by
    default all at time 0, as genai-bench's users do (it asks locust for
    spawn_rate = concurrency, and locust's dispatcher then starts the whole batch in
    one iteration: seen as N requests arriving within milliseconds at the server).
    Requests still in flight at ``max_time_s`` come back with ``ok=False``
    (genai-bench drops them). ``on_step(now)``, if given, is called before every
    engine step and once at the end (engine metrics sample the engine's state there).
    Deterministic for a seed.
    """
    if concurrency < 1 or num_requests < 0:
        raise ValueError("concurrency must be >= 1 and num_requests >= 0")
    rng = random.Random(seed)
    if hasattr(engine, "token_event_interval"):
        engine.token_event_interval = 0  # the virtual clock needs no streaming progress
    loop = _ClosedLoop(
        engine,
        num_requests=num_requests,
        sample_lengths=sample_lengths,
        sample_prefix=sample_prefix,
        sample_blocks=sample_blocks,
        rng=rng,
        max_time_s=max_time_s,
        starts=_user_starts(min(concurrency, num_requests), spawn_rate),
        on_step=on_step,
    )
    loop.run()
    return list(loop.records.values())


def _user_starts(users: int, spawn_rate: float | None) -> list[float]:
    """User i sends its first request at i / spawn_rate seconds (all at 0 by default)."""
    rate = float(spawn_rate) if spawn_rate is not None else float("inf")
    return [user / rate if 0 < rate < float("inf") else 0.0 for user in range(users)]


class _ClosedLoop:
    """The users of one replay: each sends its next request when the last one ends."""

    def __init__(
        self,
        engine: Any,
        *,
        num_requests: int,
        sample_lengths: Callable[[random.Random], tuple[int, int]],
        sample_prefix: Callable[[random.Random], tuple[int, str | None]] | None,
        rng: random.Random,
        sample_blocks: Callable[[random.Random], tuple] | None = None,
        max_time_s: float | None,
        starts: list[float],
        on_step: Callable[[float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_step = on_step
        self.num_requests = num_requests
        self.sample_lengths = sample_lengths
        self.sample_prefix = sample_prefix
        self.sample_blocks = sample_blocks
        self.rng = rng
        self.max_time_s = max_time_s
        self.starts = starts
        self.next_user = 0  # users before it have started
        self.sent = 0
        self.records: dict[str, RequestRecord] = {}  # in send order
        self.frontend = getattr(engine, "frontend", None)
        # (time, order, user): next requests of users who saw their last one finish at a
        # time the engine's clock has not reached yet (the output path lagged).
        self.deferred: list[tuple[float, int, int]] = []
        # SimEngine can fuse quiet decode steps; other engines get plain step(now) calls.
        self.fused = MAX_FUSED_DECODE_STEPS if _accepts(engine.step, "max_decode_steps") else 0

    def run(self) -> None:
        now = 0.0
        self._spawn_due(now)
        while self.engine.has_work() or self._pending():
            if not self.engine.has_work():
                now = max(now, self._next_pending())  # idle until the next request comes
            self._spawn_due(now)
            if self.max_time_s is not None and now >= self.max_time_s:
                break
            if self.on_step is not None:
                self.on_step(now)
            out = self._step(now)
            start, now = now, now + out.duration_s
            if out.kind == "idle" and not out.events:
                break  # nothing can run: never spin
            seen = self._client_time(start, now, out)
            for ev in out.events:
                self._on_event(ev if seen is None else dataclasses.replace(ev, time=seen))
        if self.on_step is not None:
            self.on_step(now)

    def _pending(self) -> bool:
        return self.next_user < len(self.starts) or bool(self.deferred)

    def _next_pending(self) -> float:
        starts = self.starts[self.next_user : self.next_user + 1]
        return min(starts + [d[0] for d in self.deferred[:1]])

    def _client_time(self, start: float, end: float, out: Any) -> float | None:
        """When the client sees this step's events (None: at the step's end)."""
        if self.frontend is None:
            return None
        tokens = getattr(out, "streamed_tokens", 0)
        return self.frontend.deliver(
            start, end, tokens, getattr(out, "steps", 1), getattr(out, "streamed_positions", 0.0)
        )

    def _spawn_due(self, now: float) -> None:
        while self.next_user < len(self.starts) and self.starts[self.next_user] <= now:
            self._send(self.next_user, self.starts[self.next_user])
            self.next_user += 1
        while self.deferred and self.deferred[0][0] <= now:
            t, _, user = heapq.heappop(self.deferred)
            self._send(user, t)

    def _step(self, now: float) -> Any:
        if not self.fused:
            return self.engine.step(now)
        # Never fuse decode steps across a pending user spawn or a deferred request.
        return self.engine.step(now, 1 if self._pending() else self.fused)

    def _send(self, user: int, t: float) -> None:
        isl, osl = self.sample_lengths(self.rng)
        if self.sample_prefix is not None:
            plen, pkey = self.sample_prefix(self.rng)
        else:
            plen, pkey = 0, None
        blocks = self.sample_blocks(self.rng) if self.sample_blocks is not None else ()
        rid = f"req-{self.sent}"
        self.sent += 1
        self.records[rid] = RequestRecord(rid, int(isl), 0, t, None, None, False, user=user)
        self.engine.add(
            SimRequest(
                rid=rid,
                input_len=int(isl),
                output_len=int(osl),
                arrival=t,
                prefix_len=plen,
                prefix_key=pkey,
                blocks=blocks,
            )
        )

    def _on_event(self, ev: Any) -> None:
        rec = self.records.get(ev.rid)
        late = self.max_time_s is not None and ev.time > self.max_time_s
        if rec is None or late:
            return  # after the time limit the client has stopped listening
        if ev.kind == "first_token":
            rec.first_token_s = ev.time
            rec.cached_tokens = ev.cached_tokens
        elif ev.kind in ("finished", "aborted"):
            rec.end_s = ev.time
            rec.output_tokens = ev.output_tokens
            rec.ok = ev.kind == "finished"
            in_time = self.max_time_s is None or ev.time < self.max_time_s
            if self.sent + len(self.deferred) < self.num_requests and in_time:
                if self.frontend is None:
                    self._send(rec.user, ev.time)
                else:  # the engine sees it when the client sends it (a later step)
                    heapq.heappush(
                        self.deferred, (ev.time, self.sent + len(self.deferred), rec.user)
                    )
