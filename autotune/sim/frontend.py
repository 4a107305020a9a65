"""SGLang's output path — detokenizer and tokenizer manager — as one serial CPU server.

Every token SGLang streams passes through two single-threaded Python processes
before the client sees it: the DetokenizerManager (incremental detokenization of
each step's batch) and the TokenizerManager (per-request state, the OpenAI chunk,
the HTTP write; it also takes in new requests). Neither can be parallelised by
more GPUs, so at high output rates they, not the GPU, set the pace: SGLang's own
issue #6553 ("TokenizerManager may encounter single-core bottlenecks under
high-concurrency scenarios") and the measurement in sgl-project/sglang PR #22548
(H200, Qwen3-1.7B, output 1024: 21,753 output tok/s with streaming vs 28,828 tok/s
without, on the default server) show the cap. In a closed loop a client holds its
slot until its last chunk arrives, so when the output path lags, fewer requests
are in the engine and the rest wait in the output path: TTFT grows with the output
length at a fixed concurrency, the signature of the calibration rows at
concurrency 512 (docs/simulator.md).

The model: each streamed chunk costs ``token_us`` of the output path's time, the
path serves the engine's steps in order, and a step's events (first token,
finish) reach the client when the path has processed that step. With
``--stream-interval N`` SGLang streams one chunk per N tokens.

    >>> fe = FrontEnd(token_us=50.0)
    >>> round(fe.deliver(0.0, 0.010, tokens=100), 6)   # 5 ms of work after a 10 ms step
    0.015
    >>> round(fe.deliver(0.010, 0.011, tokens=100), 6)  # still busy: queues behind it
    0.02
"""

from __future__ import annotations

from dataclasses import dataclass

# Cost of one streamed chunk in SGLang's output path. Not fitted: it is the cap
# measured in sgl-project/sglang PR #22548 (2026-04, H200 x4 DP=4, Qwen3-1.7B,
# input 128, output 1024): the default server streamed 21,753 output tok/s where
# the same engine without streaming gave 28,828, i.e. 1 s / 21,753 = 46 us a token.
# SGLang 0.5.6.post2 (the calibration rows' version) predates that PR's speed-ups.
STREAM_TOKEN_US = 46.0


@dataclass
class FrontEnd:
    """The output path's clock: ``deliver`` returns when a step's outputs reach the client."""

    token_us: float = STREAM_TOKEN_US
    stream_interval: int = 1  # SGLang --stream-interval: tokens per streamed chunk
    free_at: float = 0.0  # when the path has worked off everything handed to it

    def deliver(self, start: float, end: float, tokens: int, steps: int = 1) -> float:
        """Hand over ``tokens`` streamed tokens of ``steps`` equal engine steps run from
        ``start`` to ``end``; return when the last of them reaches the client."""
        if self.token_us <= 0.0:
            return end
        steps = max(1, steps)
        per_step = tokens / max(1, self.stream_interval) * self.token_us / 1e6 / steps
        step_s = (end - start) / steps
        # Work arrives at the end of each step and is served in order: the path ends
        # either behind the first step's work (it is the bottleneck) or one step's
        # work after the engine (it keeps up).
        self.free_at = max(max(self.free_at, start + step_s) + steps * per_step, end + per_step)
        return self.free_at
