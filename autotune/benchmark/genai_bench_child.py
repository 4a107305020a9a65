"""``python -m autotune.benchmark.genai_bench_child benchmark ...``: genai-bench's CLI, without its reports.

Run ONLY as a child process (importing genai-bench gevent-monkey-patches the
interpreter; autotune itself never imports this module). It is genai-bench 0.0.5's
own ``genai_bench.cli.cli`` with the same options and the same result files (one
JSON per run, ``experiment_metadata.json``), except that the per-experiment reports
it makes after the last run — ``<folder>_summary.xlsx``, the interim and the 2x4
PNG plots — are skipped: genai-bench has no option for that, and on a loaded host
they took ~18 s per trial (longer than a short benchmark) while the engine, and its
GPUs, sat idle waiting for the process to exit. autotune reads only the JSON files.

The reports can be made afterwards from the kept folder with genai-bench's own
subcommands::

    genai-bench excel --experiment-folder <trial>/genai-bench --excel-name summary
    genai-bench plot --experiments-folder <trial>/genai-bench --group-key traffic_scenario
"""

from __future__ import annotations

# The names cli.benchmark() calls after the last run, looked up in its module.
REPORT_FUNCTIONS = (
    "create_workbook",
    "plot_experiment_data_flexible",
    "plot_single_scenario_inference_speed_vs_throughput",
)


def _skipped(*_args: object, **_kwargs: object) -> None:
    return None


def main() -> None:
    import genai_bench.cli.cli as cli

    for name in REPORT_FUNCTIONS:
        if not hasattr(cli, name):  # another genai-bench: fail loudly, not silently slow
            raise SystemExit(f"genai-bench has no {name}: autotune expects genai-bench 0.0.5")
        setattr(cli, name, _skipped)
    cli.cli(prog_name="genai-bench")


if __name__ == "__main__":
    main()
