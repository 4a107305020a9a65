"""The real-time loop: steps the clock-free engine on the wall clock.

``RealTimeDriver.run`` asks the engine (``autotune.sim.types.Engine``) for one step at
a time, sleeps for the step's simulated duration on absolute deadlines of the real
clock (so the schedule does not drift), then hands the step's token events to the
waiting HTTP handlers (``InFlight.event``) and writes SGLang's scheduler log lines.

When the CPU falls behind the schedule, steps run back to back until it catches up
(a warning is logged); beyond ``MAX_LAG_S`` the clock is re-synchronised instead.
"""

from __future__ import annotations

import asyncio
import logging
import time

from autotune.sim.types import Engine, EngineStats, SimRequest, StepOutcome

sched_logger = logging.getLogger("sglang.srt.managers.scheduler")

# Behind the simulated schedule (CPU busy), the loop runs steps back to back to
# catch up, so a burst of work does not shift later timings; beyond MAX_LAG_S the
# debt is dropped instead (the clock re-synchronised, timings stretched).
WARN_LAG_S = 0.05
MAX_LAG_S = 1.0


class InFlight:
    """One in-flight request: the driver updates it, its HTTP handler waits on it."""

    __slots__ = (
        "rid",
        "prompt_tokens",
        "output_len",
        "created",
        "t_start",
        "t_first",
        "t_queued",
        "tokens",
        "cached",
        "finished",
        "aborted",
        "next_emit",
        "event",
        "blocks",
    )

    def __init__(self, rid: str, prompt_tokens: int, output_len: int, t_start: float) -> None:
        self.rid = rid
        self.prompt_tokens = prompt_tokens
        self.output_len = output_len
        self.created = int(time.time())
        self.t_start = t_start
        self.t_first = 0.0
        self.t_queued = t_start
        self.tokens = 0
        self.cached = 0
        self.finished = False
        self.aborted = False
        self.next_emit = 1  # wake the handler when this many tokens exist
        self.event = asyncio.Event()
        self.blocks: tuple = ()  # the prompt's token blocks (autotune.sim.prefix)


class RealTimeDriver:
    """Owns the engine's clock: requests go in with ``add``, token events come out."""

    def __init__(self, engine: Engine, t0: float, decode_log_interval: int) -> None:
        self.engine = engine
        self.t0 = t0  # time.monotonic() of the engine's time zero
        self.decode_log_interval = max(1, decode_log_interval)
        self._reqs: dict[str, InFlight] = {}
        self._wake = asyncio.Event()
        self._max_arrival = 0.0
        self._decode_steps = 0
        self._retracted_seen = 0
        self._last_lag_log = -1e9

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, req: InFlight) -> None:
        """Queue ``req`` in the engine, arriving at its handler's entry (``t_start``)."""
        self._reqs[req.rid] = req
        # Stamped at the handler's entry: parsing and tokenising overlap the
        # simulated schedule instead of delaying it (see run()).
        arrival = req.t_start - self.t0
        req.t_queued = time.monotonic()
        self.engine.add(
            SimRequest(
                rid=req.rid,
                input_len=req.prompt_tokens,
                output_len=req.output_len,
                arrival=arrival,
                blocks=req.blocks,
            )
        )
        self._max_arrival = max(self._max_arrival, arrival)
        self._wake.set()

    def abort(self, req: InFlight) -> bool:
        """Abort ``req`` in the engine; False if it was no longer in flight."""
        if self._reqs.pop(req.rid, None) is None:
            return False
        self.engine.abort(req.rid)
        return True

    def discard(self, rid: str) -> None:
        """Stop delivering events for ``rid`` (the engine finishes it on its own)."""
        self._reqs.pop(rid, None)

    def stats(self) -> EngineStats:
        return self.engine.stats()

    async def run(self) -> None:
        """Step the engine on absolute deadlines of the real clock; deliver events at step end.

        ``vnow`` is the engine's clock (seconds since start). Each step ends at
        ``t0 + vnow``; oversleeping one step shortens the next sleep, so timer
        jitter does not accumulate. The mean lateness of the event loop's timer
        (~1 ms: epoll rounds up to whole milliseconds) is learnt and slept off
        early. A step never starts before the arrival of a request already queued
        (arrival = the handler's entry, so parsing and tokenising overlap the step
        in flight); an idle engine restarts at the waking request's arrival.
        """
        engine = self.engine
        vnow = 0.0
        late = 0.0  # moving average of how late the timer fires (s)
        while True:
            if not engine.has_work():
                self._wake.clear()
                await self._wake.wait()
                continue
            # Causality: behind schedule (catching up), a step must not serve a request
            # before it arrived; this drops the part of the debt its arrival overlaps.
            vnow = self._catch_up(max(vnow, self._max_arrival))
            out = engine.step(vnow)
            vnow += out.duration_s
            target = self.t0 + vnow
            delay = target - time.monotonic() - late
            if delay > 0:
                await asyncio.sleep(delay)
                late = min(0.003, max(0.0, late + 0.1 * (time.monotonic() - target)))
            else:  # behind schedule: still let the handlers run between steps
                await asyncio.sleep(0.001 if out.duration_s <= 0 and not out.events else 0)
            self._deliver(out)
            if out.events:
                await asyncio.sleep(0)  # let the woken handlers write before we log
            self._log_step(out)

    def _catch_up(self, vnow: float) -> float:
        """Warn when behind the real clock; beyond ``MAX_LAG_S`` jump to it."""
        real = self._now()
        lag = real - vnow
        if lag > WARN_LAG_S and vnow > 0 and real - self._last_lag_log > 10.0:
            self._last_lag_log = real
            sched_logger.warning(
                "Simulator fell behind real time by %.0f ms (CPU overloaded); %s.",
                lag * 1e3,
                "timings are stretched" if lag > MAX_LAG_S else "catching up",
            )
        return real if lag > MAX_LAG_S else vnow

    def _deliver(self, out: StepOutcome) -> None:
        reqs = self._reqs
        for ev in out.events:
            req = reqs.get(ev.rid)
            if req is None:
                continue
            kind = ev.kind
            if ev.output_tokens > req.tokens:
                req.tokens = ev.output_tokens
            if kind == "first_token":
                req.cached = ev.cached_tokens
                req.event.set()
            elif kind == "tokens":
                if req.tokens >= req.next_emit:
                    req.event.set()
            elif kind == "finished":
                req.finished = True
                reqs.pop(ev.rid, None)
                req.event.set()
            elif kind == "aborted":
                req.aborted = True
                reqs.pop(ev.rid, None)
                req.event.set()

    def _log_step(self, out: StepOutcome) -> None:
        kind = out.kind
        retracted = getattr(self.engine, "num_retracted_total", None)
        if retracted is None or retracted > self._retracted_seen:  # cheap check per step
            self._check_retraction(self.stats())
        if kind in ("prefill", "mixed"):
            st = self.stats()
            sched_logger.info(
                "Prefill batch, #new-seq: %d, #new-token: %d, #cached-token: %d, token usage: %.2f, "
                "#running-req: %d, #queue-req: %d",
                out.new_seqs,
                out.new_tokens,
                out.cached_tokens,
                st.token_usage,
                st.num_running_reqs,
                st.num_queue_reqs,
            )
        if kind in ("decode", "mixed"):
            self._decode_steps += 1
            if self._decode_steps % self.decode_log_interval == 0:
                st = self.stats()
                sched_logger.info(
                    "Decode batch, #running-req: %d, #token: %d, token usage: %.2f, cuda graph: %s, "
                    "gen throughput (token/s): %.2f, #queue-req: %d",
                    st.num_running_reqs,
                    st.num_used_tokens,
                    st.token_usage,
                    st.is_cuda_graph,
                    st.gen_throughput,
                    st.num_queue_reqs,
                )

    def _check_retraction(self, st: EngineStats) -> None:
        if st.num_retracted_reqs_total > self._retracted_seen:
            n = st.num_retracted_reqs_total - self._retracted_seen
            self._retracted_seen = st.num_retracted_reqs_total
            sched_logger.warning(
                "KV cache pool is full. Retract requests. #retracted_reqs: %d, #new_token_ratio: %.4f",
                n,
                st.new_token_ratio,
            )
