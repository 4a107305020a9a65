"""Study builders for the results tests: records without MLflow, runs as the tuner writes them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from autotune.report.records import StudyRecord, TrialRecord


def trial(
    index: int,
    tput: float | None = None,
    ttft: float | None = None,
    *,
    flags: dict[str, str] | None = None,
    failure: str | None = None,
    baseline: bool = False,
    feasible: bool | None = True,
    values: list[float] | None = None,
    levels: tuple[int, ...] = (8, 32),
) -> TrialRecord:
    """A trial record; throughput/TTFT per level scale with the level."""
    ok = failure is None
    metrics: dict[str, float] = {}
    if ok:
        metrics = {
            "output_throughput_tok_s": tput,
            "ttft_p99_ms": ttft,
            "tpot_mean_ms": 8.0,
            "e2e_p99_ms": ttft * 4,
            "error_rate": 0.0,
            "objective": tput,
        }
        for c in levels:
            metrics[f"c{c}.output_throughput_tok_s"] = tput * c / max(levels)
            metrics[f"c{c}.ttft_p99_ms"] = ttft * c / max(levels)
    return TrialRecord(
        run_id=f"run{index:03d}",
        name=f"trial-{index:03d}" + ("-baseline" if baseline else ""),
        index=index,
        status="ok" if ok else "failed",
        failure=failure,
        baseline=baseline,
        feasible=feasible if ok else None,
        flags=flags
        if flags is not None
        else ({} if baseline else {"mem-fraction-static": str(0.7 + index / 100)}),
        metrics=metrics,
        values=(values if values is not None else [tput]) if ok else None,
        simulated=True,
    )


def make_record(
    trials: list[TrialRecord],
    *,
    simulated: bool = True,
    metrics: list[str] | None = None,
    directions: list[str] | None = None,
    slo: dict[str, float] | None = None,
) -> StudyRecord:
    return StudyRecord(
        run_id="sweep0",
        name="study-x",
        experiment_id="1",
        experiment="autotune",
        tracking_uri="",
        status="done",
        simulated=simulated,
        sweep_dir=None,
        metrics=metrics or ["output_throughput_tok_s"],
        directions=directions or ["maximize"],
        slo=slo or {},
        params={"deploy": "sim"},
        tags={},
        n_trials=len(trials),
        trials=trials,
    )


# -- synthetic MLflow stores -----------------------------------------------------------------
def trial_config(composer: Any, *overrides: str) -> dict[str, Any]:
    """A trial's resolved config as the tuner stores it (config.yaml)."""
    return composer.compose(["search=none", *overrides])


def write_study(
    client: Any,
    experiment: str,
    name: str,
    trials: list[dict[str, Any]],
    *,
    sweep_dir: Path | None = None,
    image_tag: str | None = None,
    simulated: bool = True,
) -> str:
    """A sweep run and its trials as the tuner writes them; returns the sweep run id.

    Each trial dict: ``params`` (trial cfg params), ``metrics``, ``status``,
    ``failure``, ``baseline``, ``config`` (resolved config dict).
    """
    from mlflow.entities import Metric, Param

    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    tags = {
        "autotune.role": "sweep",
        "autotune.study": name,
        "autotune.simulated": str(simulated).lower(),
        "autotune.status": "done",
        "autotune.n_trials": str(len(trials)),
        "autotune.command": f"deploy.clock=virtual runtime.image_tag={image_tag}",
    }
    if sweep_dir is not None:
        tags["autotune.sweep_dir"] = str(sweep_dir)
    parent = client.create_run(exp_id, run_name=name, tags=tags)
    pid = parent.info.run_id
    client.log_batch(
        pid,
        params=[
            Param("model", "llama-3.1-8b-instruct"),
            Param("runtime", "sglang"),
            Param("deploy", "sim"),
            Param("objective", "maximize:output_throughput_tok_s"),
            Param("slo", "none"),
        ],
    )
    for i, t in enumerate(trials):
        ok = t.get("status", "ok") == "ok"
        ttags = {
            "autotune.role": "trial",
            "mlflow.parentRunId": pid,
            "autotune.study": name,
            "autotune.status": "ok" if ok else "failed",
            "autotune.simulated": str(simulated).lower(),
            "autotune.trial_index": str(i),
            "autotune.baseline": str(t.get("baseline", False)).lower(),
        }
        if ok:
            ttags["autotune.feasible"] = "true"
        else:
            ttags["autotune.failure"] = t.get("failure", "crash")
        run = client.create_run(
            exp_id,
            run_name=f"trial-{i:03d}" + ("-baseline" if t.get("baseline") else ""),
            tags=ttags,
        )
        rid = run.info.run_id
        now = int(time.time() * 1000)
        flags = t.get("flags", {})
        client.log_batch(
            rid,
            params=[Param(k, str(v)) for k, v in flags.items()]
            + [
                Param("model", "llama-3.1-8b-instruct"),
                Param("deploy", "sim"),
                Param("sim.gpu", "h200_sxm"),
            ],
            metrics=[Metric(k, v, now, 0) for k, v in t.get("metrics", {}).items()],
        )
        cfg = dict(t["config"])
        if image_tag:
            cfg["runtime"] = {**cfg["runtime"], "image_tag": image_tag}
        client.log_text(rid, yaml.safe_dump(cfg, sort_keys=False), "config.yaml")
        client.set_terminated(rid, "FINISHED" if ok else "FAILED")
    client.set_terminated(pid, "FINISHED")
    return pid


def metrics_for(tput: float, ttft: float) -> dict[str, float]:
    return {
        "objective": tput,
        "output_throughput_tok_s": tput,
        "ttft_p99_ms": ttft,
        "tpot_mean_ms": 8.0,
        "e2e_p99_ms": ttft * 4,
        "error_rate": 0.0,
        "slo_feasible": 1.0,
        "c8.output_throughput_tok_s": tput / 3,
        "c32.output_throughput_tok_s": tput,
        "c8.ttft_p99_ms": ttft / 4,
        "c32.ttft_p99_ms": ttft,
    }
