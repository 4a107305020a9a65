"""Score alternative workload and deployment hypotheses for the calibration rows' TTFT.

The simulator's TTFT on the calibration rows was off by 41 % (dense) and 65 %
(Qwen3-235B) before v2; docs/simulator.md ("v2: what moved and what did not") has
where it stands now. This script replays the rows under hypotheses about how they were produced, each one a mechanism with a
source, and prints TPOT / TTFT MAPE per hypothesis, so that what was ruled out can be
re-checked. Nothing here changes the simulator.

    .venv/bin/python tools/sim_ttft_hypotheses.py                 # all hypotheses, both row sets
    .venv/bin/python tools/sim_ttft_hypotheses.py --only baseline,exact_osl --per-row
    .venv/bin/python tools/sim_ttft_hypotheses.py --only baseline --stream-token-us 60

Hypotheses (``HYPOTHESES``):

- ``baseline``: validate's defaults (osl +-15 %, 4 requests per user, all at once),
  with SGLang's output path (autotune/sim/frontend.py, ~46 us per streamed token).
- ``no_output_path``: the same without the output path (the model before it).
- ``exact_osl``: output lengths exactly ``osl`` (ignore_eos + max_tokens, as
  aiconfigurator's benchmark template runs aiperf with ``--osl-stddev 0``).
- ``aiperf_rounds``: exact osl, 10 requests per user after a discarded warm-up of 2
  per user (aiconfigurator's template: ``--num-requests 50*c --warmup-request-count
  2*c``; 10 rounds instead of 50 to keep the run short, the mean has settled by then).
- ``aic_generator`` / ``aic_generator_exact``: the SGLang flags aiconfigurator's
  generator writes for an aggregated SGLang deployment (rule_plugin/sglang.rule:
  ``max_prefill_tokens = isl + 1500``, ``enable_mixed_chunk = true``,
  ``max-running-requests`` 512), with validate's spread / with exact osl and rounds.
- ``ingest_delay``: exact osl, and every request reaches the scheduler only after the
  tokenizer manager has tokenized the ones before it (one process, 0.3 ms + 1 us per
  prompt token): spreads a wave of simultaneous arrivals over time.
- ``steady_state``: validate's spread, but 10 requests per user after a discarded
  warm-up of 2 per user: the steady state without the first round.
- ``ramp_exact_c4`` / ``_c1`` / ``_c05``: exact osl, users started like a load
  generator's ramp-up (4, 1, 0.5 x concurrency users per second) instead of at once.
- ``fixed_500`` ... ``fixed_2000``: validate's spread, a fixed number of requests per
  run (at least one per user) instead of a number proportional to the users.
- ``aiperf_default_count``: validate's spread, 2 requests per user (aiperf's default
  request count, 2 x concurrency).
- ``ingest_delay_spread``: ``ingest_delay``'s serial tokenizer under validate's spread.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autotune.sim.predict import length_sampler  # noqa: E402
from autotune.sim.replay import RequestRecord, _ClosedLoop, _user_starts  # noqa: E402
from autotune.sim.settings import build_engine  # noqa: E402
from autotune.sim.types import SimRequest  # noqa: E402
from autotune.sim.validate import (  # noqa: E402
    DEFAULT_OSL_SPREAD,
    DEFAULT_REQUESTS_PER_USER,
    SiliconRow,
    read_rows,
    row_flags,
)

FIXTURES = REPO / "tests" / "fixtures"
ROW_SETS = {
    "dense": FIXTURES / "silicon_sample_sglang_llama31_8b_fp8_h200.csv",
    "qwen3-235b": FIXTURES / "silicon_sample_sglang_qwen3_235b_fp8_h200.csv",
}


def _aic_generator_flags(row: SiliconRow) -> dict[str, Any]:
    # aiconfigurator rule_plugin/sglang.rule (2026-04): agg_prefill_decode
    # max_prefill_tokens = isl + 1500; agg enable_mixed_chunk = true; agg_decode
    # max_batch_size (SGLang --max-running-requests) = 512 below 512, else 2x.
    mrr = 512 if row.concurrency < 512 else 2 * row.concurrency
    return {
        "max-prefill-tokens": row.isl + 1500,
        "enable-mixed-chunk": True,
        "max-running-requests": mrr,
    }


@dataclass(frozen=True)
class Hypothesis:
    osl_spread: float = DEFAULT_OSL_SPREAD
    requests_per_user: float = DEFAULT_REQUESTS_PER_USER
    warmup_per_user: int = 0
    extra_flags: Callable[[SiliconRow], dict[str, Any]] | None = None
    ingest_ms: tuple[float, float] = field(default=(0.0, 0.0))  # per request, per token
    stream_token_us: float | None = None  # None: the simulator's default
    ramp_per_user: float | None = None  # users started per second / concurrency; None: at once
    total_requests: int | None = None  # a fixed count per run instead of requests_per_user


HYPOTHESES = {
    "baseline": Hypothesis(),
    "no_output_path": Hypothesis(stream_token_us=0.0),
    "exact_osl": Hypothesis(osl_spread=0.0),
    "aiperf_rounds": Hypothesis(osl_spread=0.0, requests_per_user=10, warmup_per_user=2),
    "aic_generator": Hypothesis(extra_flags=_aic_generator_flags),
    "aic_generator_exact": Hypothesis(
        osl_spread=0.0, requests_per_user=10, warmup_per_user=2, extra_flags=_aic_generator_flags
    ),
    "ingest_delay": Hypothesis(osl_spread=0.0, ingest_ms=(0.3, 0.001)),
    "steady_state": Hypothesis(requests_per_user=10, warmup_per_user=2),
    "ramp_exact_c4": Hypothesis(osl_spread=0.0, ramp_per_user=4.0),
    "ramp_exact_c1": Hypothesis(osl_spread=0.0, ramp_per_user=1.0),
    "ramp_exact_c05": Hypothesis(osl_spread=0.0, ramp_per_user=0.5),
    **{f"fixed_{n}": Hypothesis(total_requests=n) for n in (500, 1000, 1500, 2000)},
    "aiperf_default_count": Hypothesis(requests_per_user=2),
    "ingest_delay_spread": Hypothesis(ingest_ms=(0.3, 0.001)),
}


def _starts(concurrency: int, ramp_per_user: float | None) -> list[float]:
    rate = None if ramp_per_user is None else concurrency * ramp_per_user
    return _user_starts(concurrency, rate)


class _IngestLoop(_ClosedLoop):
    """A closed loop whose requests reach the engine through one serial tokenizer."""

    def __init__(self, *args: Any, ingest_ms: tuple[float, float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.per_req_s, self.per_tok_s = ingest_ms[0] / 1e3, ingest_ms[1] / 1e3
        self.queue: list[tuple[float, int, int, int]] = []
        self.free_at = 0.0

    def _send(self, user: int, t: float) -> None:
        isl, osl = self.sample_lengths(self.rng)
        rid = f"req-{self.sent}"
        self.records[rid] = RequestRecord(rid, int(isl), 0, t, None, None, False, user=user)
        self.free_at = max(t, self.free_at) + self.per_req_s + self.per_tok_s * isl
        heapq.heappush(self.queue, (self.free_at, self.sent, int(isl), int(osl)))
        self.sent += 1

    def _deliver(self, now: float) -> None:
        while self.queue and self.queue[0][0] <= now:
            vis, n, isl, osl = heapq.heappop(self.queue)
            req = SimRequest(rid=f"req-{n}", input_len=isl, output_len=osl, arrival=vis)
            self.engine.add(req)

    def _pending(self) -> bool:
        return super()._pending() or bool(self.queue)

    def _next_pending(self) -> float:
        times = [self.queue[0][0]] if self.queue else []
        if super()._pending():
            times.append(super()._next_pending())
        return min(times)

    def _spawn_due(self, now: float) -> None:
        super()._spawn_due(now)
        self._deliver(now)


def simulate(row: SiliconRow, hyp: Hypothesis, seed: int = 0) -> tuple[float, float]:
    """Mean (TTFT ms, TPOT ms) of ``row`` replayed under ``hyp``."""
    flags = row_flags(row) | (hyp.extra_flags(row) if hyp.extra_flags else {})
    engine = build_engine(
        flags, model=row.model, gpu=row.gpu, dtype=row.dtype, seed=seed,
        sglang_version=row.sglang_version or None,
    )  # fmt: skip
    engine.token_event_interval = 0
    if hyp.stream_token_us is not None:
        engine.frontend.token_us = hyp.stream_token_us
    warm = hyp.warmup_per_user * row.concurrency
    measured = max(int(hyp.requests_per_user * row.concurrency), row.concurrency)
    if hyp.total_requests is not None:
        measured = max(hyp.total_requests, row.concurrency)
    loop = _IngestLoop(
        engine,
        num_requests=measured + warm,
        sample_lengths=length_sampler(row.isl, row.osl, hyp.osl_spread),
        sample_prefix=None,
        rng=random.Random(seed),
        max_time_s=None,
        starts=_starts(row.concurrency, hyp.ramp_per_user),
        ingest_ms=hyp.ingest_ms,
    )
    loop.run()
    records = sorted(loop.records.values(), key=lambda r: int(r.rid.split("-")[1]))[warm:]
    ok = [r for r in records if r.ok and r.ttft_s is not None]
    ttft = statistics.mean(r.ttft_s for r in ok)
    tpot = statistics.mean(r.tpot_s for r in ok if r.tpot_s is not None)
    return 1000.0 * ttft, 1000.0 * tpot


def score(rows: list[SiliconRow], hyp: Hypothesis, per_row: bool) -> dict[str, float]:
    """TPOT and TTFT MAPE of ``rows`` under ``hyp``."""
    e_ttft, e_tpot = [], []
    for row in rows:
        ttft, tpot = simulate(row, hyp)
        e_ttft.append(abs(ttft - row.ttft_ms) / row.ttft_ms)
        e_tpot.append(abs(tpot - row.tpot_ms) / row.tpot_ms)
        if per_row:
            print(  # noqa: T201 - a developer tool's table
                f"  tp{row.tp} {row.isl}/{row.osl} c{row.concurrency}: "
                f"TTFT {ttft:.0f} vs {row.ttft_ms:.0f} ms, TPOT {tpot:.1f} vs {row.tpot_ms:.1f} ms"
            )
    return {"tpot_mape": statistics.mean(e_tpot), "ttft_mape": statistics.mean(e_ttft)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(HYPOTHESES), help="comma-separated names")
    ap.add_argument("--rows", default=",".join(ROW_SETS), help="dense, qwen3-235b")
    ap.add_argument("--per-row", action="store_true")
    ap.add_argument(
        "--stream-token-us", type=float, default=None, help="the output path's cost per token"
    )
    args = ap.parse_args(argv)
    for name in args.only.split(","):
        hyp = HYPOTHESES[name]
        if args.stream_token_us is not None:
            hyp = dataclasses.replace(hyp, stream_token_us=args.stream_token_us)
        for rows_name in args.rows.split(","):
            result = score(read_rows(ROW_SETS[rows_name]), hyp, args.per_row)
            line = {"hypothesis": name, "rows": rows_name}
            line |= {k: round(v, 4) for k, v in result.items()}
            print(json.dumps(line), flush=True)  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
