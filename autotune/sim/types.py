"""The contract between the simulated scheduler and its two clocks.

The scheduler (``autotune.sim.scheduler.SimEngine``) is clock-free: it is handed
requests, and each ``step(now)`` call plans one forward batch and returns how long
that batch takes plus the token events that happen when it ends. The virtual
clock (``autotune.sim.replay``) advances time by ``duration_s`` instantly; the
real-time server (``autotune.sim.server``) sleeps that long and then streams the
events to its HTTP clients.

    engine = SimEngine(settings, profile, seed=0)      # may raise SimStartupError
    engine.add(SimRequest(rid="r1", input_len=1024, output_len=128, arrival=0.0))
    while engine.has_work():
        out = engine.step(now)
        now += out.duration_s
        for ev in out.events: ...                       # ev.time == now
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol


class SimStartupError(RuntimeError):
    """Raised where real SGLang fails at start-up; ``str(err)`` is SGLang's own message."""


@dataclass
class SimRequest:
    rid: str
    input_len: int
    output_len: int
    arrival: float = 0.0
    # Tokens of the prompt shared with earlier prompts (radix-cache / lpm model);
    # ``prefix_key`` names the shared prefix so hits can be tracked.
    prefix_len: int = 0
    prefix_key: str | None = None
    # The prompt's token blocks (``autotune.sim.prefix``), from its token ids; when
    # given they replace ``prefix_len``/``prefix_key``.
    blocks: tuple = ()


EventKind = Literal["first_token", "tokens", "finished", "aborted"]


@dataclass
class TokenEvent:
    rid: str
    kind: EventKind
    output_tokens: int  # output tokens generated so far for this request
    time: float  # clock time at which the event happens (end of the step)
    cached_tokens: int = 0  # prompt tokens served from the prefix cache (on first_token)


@dataclass
class StepOutcome:
    duration_s: float
    events: list[TokenEvent] = field(default_factory=list)
    # "prefill", "decode", "mixed" or "idle": drives SGLang-like log lines.
    kind: str = "decode"
    new_seqs: int = 0
    new_tokens: int = 0
    cached_tokens: int = 0
    # Output tokens sampled in this outcome and the engine steps it spans (fused
    # decode steps): what the output path (autotune/sim/frontend.py) must stream.
    streamed_tokens: int = 0
    # Sum over those tokens of their position in their request's output (1 for the
    # first token): what a per-token cost growing with the text streamed is priced on.
    streamed_positions: float = 0.0
    steps: int = 1


@dataclass
class EngineStats:
    """Live gauges, exposed by the server as ``sglang:*`` Prometheus metrics."""

    num_running_reqs: int = 0
    num_queue_reqs: int = 0
    num_used_tokens: int = 0
    token_usage: float = 0.0
    max_total_num_tokens: int = 0
    num_retracted_reqs_total: int = 0
    cache_hit_rate: float = 0.0
    new_token_ratio: float = 0.0
    gen_throughput: float = 0.0
    is_cuda_graph: bool = True


class Engine(Protocol):
    def add(self, req: SimRequest) -> None: ...
    def abort(self, rid: str) -> None: ...
    def step(self, now: float) -> StepOutcome: ...
    def has_work(self) -> bool: ...
    def stats(self) -> EngineStats: ...
    def server_info(self) -> dict: ...
