"""The HTML pages: studies, new study, study, trial. Rendered by Jinja2 from the same
data the JSON API returns; live parts refresh through server-sent events (no build
step: one small script in static/console.js)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from autotune.tracking import links
from autotune.web import files
from autotune.web.service import Console, NotFound

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
_LEVEL = re.compile(r"^c(\d+)\.(.+)$")


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _fmt_num(value: Any) -> str:
    if value is None:
        return ""
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


templates.env.filters["duration"] = _fmt_duration
templates.env.filters["num"] = _fmt_num
templates.env.filters["clock"] = lambda ms: (
    time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000)) if ms else ""
)


def _console(request: Request) -> Console:
    return request.app.state.console


def _render(request: Request, name: str, **context: Any) -> HTMLResponse:
    c = _console(request)
    return templates.TemplateResponse(
        request, name, {"mlflow_url": c.settings.mlflow_url, **context}
    )


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> HTMLResponse:
    rows = await run_in_threadpool(_console(request).studies_json)
    return _render(request, "studies.html", studies=rows)


@router.get("/fragments/studies", response_class=HTMLResponse)
async def studies_fragment(request: Request) -> HTMLResponse:
    rows = await run_in_threadpool(_console(request).studies_json)
    return _render(request, "_studies_table.html", studies=rows)


@router.get("/new", response_class=HTMLResponse)
async def new_study(request: Request, source: str = "") -> HTMLResponse:
    c = _console(request)
    start_args: list[str] = []
    if source:
        try:
            start_args = await run_in_threadpool(c.launch_args, source)
        except NotFound:
            start_args = []
    return _render(request, "new.html", start_args=start_args)


def _study_context(c: Console, study_id: str) -> dict[str, Any]:
    state = c.study_json(study_id)
    study, _ = c.resolve(study_id)
    trials, best_files, figures = [], [], []
    if study is not None:
        trials = [c.scrub(t.__dict__) for t in study.trials]
        best_files = files.listing(study.sweep_dir, "best") if study.sweep_dir else []
        figures = files.listing(study.sweep_dir, "figures") if study.sweep_dir else []
        state["mlflow_experiment_url"] = links.runs_view_url(
            c.settings.mlflow_url, study.experiment_id
        )
        for t in trials:
            t["mlflow_url"] = links.run_url(c.settings.mlflow_url, study.experiment_id, t["run_id"])
    return {
        "study": state,
        "trials": trials,
        "chart": _chart(trials),
        "best_files": best_files,
        "figures": [f for f in figures if f.endswith(".png")],
    }


@router.get("/studies/{study_id}", response_class=HTMLResponse)
async def study_page(study_id: str, request: Request):
    c = _console(request)
    try:
        ctx = await run_in_threadpool(_study_context, c, study_id)
    except NotFound as e:
        raise HTTPException(404, str(e)) from e
    if study_id.startswith("l-") and ctx["study"]["id"] != study_id:
        return RedirectResponse(f"/studies/{ctx['study']['id']}", status_code=303)
    return _render(request, "study.html", **ctx)


@router.get("/fragments/studies/{study_id}", response_class=HTMLResponse)
async def study_fragment(study_id: str, request: Request) -> HTMLResponse:
    try:
        ctx = await run_in_threadpool(_study_context, _console(request), study_id)
    except NotFound as e:
        raise HTTPException(404, str(e)) from e
    return _render(request, "_study_body.html", **ctx)


def _levels(metrics: dict[str, float]) -> tuple[list[int], list[str], dict]:
    """Per-concurrency metrics (``c8.ttft_p99_ms``) as a table: levels, names, values."""
    table: dict[tuple[int, str], float] = {}
    for key, value in metrics.items():
        m = _LEVEL.match(key)
        if m:
            table[(int(m.group(1)), m.group(2))] = value
    levels = sorted({lv for lv, _ in table})
    names = sorted({n for _, n in table})
    return levels, names, table


@router.get("/trials/{run_id}", response_class=HTMLResponse)
async def trial_page(run_id: str, request: Request) -> HTMLResponse:
    c = _console(request)
    try:
        trial, study = await run_in_threadpool(c.trial, run_id)
    except NotFound as e:
        raise HTTPException(404, str(e)) from e
    levels, names, table = _levels(trial.metrics)
    pooled = {k: v for k, v in trial.metrics.items() if not _LEVEL.match(k)}
    return _render(
        request,
        "trial.html",
        trial=c.scrub(trial.__dict__),
        study={"id": study.id, "name": study.name},
        levels=levels,
        names=names,
        table=table,
        pooled=dict(sorted(pooled.items())),
        logs=list(files.TRIAL_LOGS),
        mlflow_run=links.run_url(c.settings.mlflow_url, study.experiment_id, trial.run_id),
    )


def _chart(trials: list[dict[str, Any]], width: int = 640, height: int = 180) -> dict:
    """An SVG polyline of the objective per trial (drawn server-side: no JS library)."""
    points = [(i, t["objective"]) for i, t in enumerate(trials) if t.get("objective") is not None]
    if not points:
        return {"points": "", "dots": [], "width": width, "height": height}
    ys = [y for _, y in points]
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or abs(hi) or 1.0
    n = max(len(trials) - 1, 1)
    pad = 24

    def xy(i: int, y: float) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * i / n
        return round(x, 1), round(height - pad - (height - 2 * pad) * (y - lo) / span, 1)

    dots = [
        {"x": xy(i, y)[0], "y": xy(i, y)[1], "label": f"{trials[i]['name']}: {y:.4g}"}
        for i, y in points
    ]
    return {
        "points": " ".join(f"{d['x']},{d['y']}" for d in dots),
        "dots": dots,
        "width": width,
        "height": height,
        "lo": f"{lo:.4g}",
        "hi": f"{hi:.4g}",
    }
