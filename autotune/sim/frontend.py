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

The model: each streamed chunk costs ``token_us`` of the output path's time plus
``text_us_per_ktok`` per 1000 tokens its request has already streamed (SGLang up to
0.5.10 copies each request's cumulative output ids and text on every chunk), the
path serves the engine's steps in order, and a step's events (first token,
finish) reach the client when the path has processed that step. With
``--stream-interval N`` SGLang streams one chunk per N tokens.

    >>> fe = FrontEnd(token_us=50.0, text_us_per_ktok=0.0)
    >>> round(fe.deliver(0.0, 0.010, tokens=100), 6)   # 5 ms of work after a 10 ms step
    0.015
    >>> round(fe.deliver(0.010, 0.011, tokens=100), 6)  # still busy: queues behind it
    0.02
"""

from __future__ import annotations

from dataclasses import dataclass

# The part of a streamed chunk's cost that grows with the output so far. Not fitted:
# sgl-project/sglang PR #22567 (2026-04, H200) profiled TokenizerManager
# ._handle_batch_output on the default (non-incremental) streaming path and found
# ``state.output_ids.copy()`` + the cumulative text, both O(tokens so far), to be 94 %
# of its per-request cost: 1.28 us at 331 output tokens, 5.27 at 1,650, 14.94 at
# 3,747, 21.30 at 5,247, i.e. (21.30 - 1.28) / (5,247 - 331) = 4.07 us per 1000
# tokens already streamed. Every version the simulator covers (0.4.0 ... 0.5.10) has
# that path (``state.text += ...``, ``output_ids.copy()`` unless --stream-output);
# the PR removed it for later releases.
STREAM_TEXT_US_PER_KTOK = 4.07
# Cost of one streamed chunk in SGLang's output path, without that growing part. Not
# fitted: the cap measured in sgl-project/sglang PR #22548 (2026-04, H200 x4 DP=4,
# Qwen3-1.7B, input 128, output 1024): the default server streamed 21,753 output
# tok/s where the same engine without streaming gave 28,828, i.e. 1 s / 21,753 =
# 46.0 us a token, of which the growing part at those requests' mean of 512 tokens
# streamed is 4.07 us x 0.512 = 2.1 us.
STREAM_TOKEN_US = round(1e6 / 21_753 - STREAM_TEXT_US_PER_KTOK * 0.512, 2)


@dataclass
class FrontEnd:
    """The output path's clock: ``deliver`` returns when a step's outputs reach the client."""

    token_us: float = STREAM_TOKEN_US
    # Extra cost of a chunk per 1000 output tokens its request had already streamed.
    text_us_per_ktok: float = STREAM_TEXT_US_PER_KTOK
    stream_interval: int = 1  # SGLang --stream-interval: tokens per streamed chunk
    free_at: float = 0.0  # when the path has worked off everything handed to it

    def deliver(
        self, start: float, end: float, tokens: int, steps: int = 1, positions: float = 0.0
    ) -> float:
        """Hand over ``tokens`` streamed tokens of ``steps`` equal engine steps run from
        ``start`` to ``end``; return when the last of them reaches the client."""
        if self.token_us <= 0.0:
            return end
        steps = max(1, steps)
        work_us = tokens * self.token_us + positions * self.text_us_per_ktok / 1000.0
        per_step = work_us / max(1, self.stream_interval) / 1e6 / steps
        step_s = (end - start) / steps
        # Work arrives at the end of each step and is served in order: the path ends
        # either behind the first step's work (it is the bottleneck) or one step's
        # work after the engine (it keeps up).
        self.free_at = max(max(self.free_at, start + step_s) + steps * per_step, end + per_step)
        return self.free_at
