"""Benchmark stage: run genai-bench against an endpoint and parse what it wrote.

- :mod:`.scenarios`: validate/normalise scenario strings, sample lengths, metric slugs
- :mod:`.genai_bench`: the driver (child process, wall-clock limit, secret scrubbing)
- :mod:`.parse`: experiment folder -> per-run and pooled metrics
- :mod:`.writer`: per-request timings -> a genai-bench-shaped folder (virtual clock)
"""

from autotune.benchmark.genai_bench import (
    BenchmarkRun,
    Workload,
    benchmark_env,
    build_command,
    run_genai_bench,
    scrub_secrets,
)
from autotune.benchmark.parse import (
    METRIC_NAMES,
    BenchmarkResult,
    RunResult,
    parse_experiment,
    parse_run_file,
)
from autotune.benchmark.scenarios import (
    Scenario,
    normalize_scenario,
    parse_scenario,
    sample_lengths,
    slug,
)
from autotune.benchmark.writer import RequestRecord, RunRecords, write_experiment

__all__ = [
    "METRIC_NAMES",
    "BenchmarkResult",
    "BenchmarkRun",
    "RequestRecord",
    "RunRecords",
    "RunResult",
    "Scenario",
    "Workload",
    "benchmark_env",
    "build_command",
    "normalize_scenario",
    "parse_experiment",
    "parse_run_file",
    "parse_scenario",
    "run_genai_bench",
    "sample_lengths",
    "scrub_secrets",
    "slug",
    "write_experiment",
]
