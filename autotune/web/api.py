"""The JSON API under ``/api``: what the pages use, and scripts too.

    curl -s localhost:8080/api/studies
    curl -s -X POST -H 'Content-Type: application/json' \\
         -d '{"overrides": ["deploy.clock=virtual", "params.mem=0.7,0.8"]}' \\
         localhost:8080/api/studies                # -> {"id": "l-…", "command": "python -m …"}
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse

from autotune.web import bridge, experiments, files
from autotune.web.service import Conflict, Console, InvalidStudy, NotFound

router = APIRouter(prefix="/api")


class StudyRequest(BaseModel):
    overrides: list[str] = Field(default_factory=list, description="Hydra overrides, as argv")
    experiment: str | None = Field(None, description="a saved experiment's name instead")


class ExperimentRequest(BaseModel):
    name: str
    overrides: list[str]
    comment: str = ""


def console(request: Request) -> Console:
    return request.app.state.console


async def _call(fn, *args):
    try:
        return await run_in_threadpool(fn, *args)
    except NotFound as e:
        raise HTTPException(404, str(e)) from e
    except Conflict as e:
        raise HTTPException(409, str(e)) from e
    except InvalidStudy as e:
        raise HTTPException(
            422, {"errors": [{"message": m} for m in e.errors], "command": e.command}
        ) from e
    except experiments.ExperimentError as e:
        raise HTTPException(422, {"errors": [{"message": str(e)}]}) from e


@router.get("/choices", summary="Config groups and their choices, flag tables, defaults")
async def choices(request: Request) -> dict[str, Any]:
    c = console(request)

    def load() -> dict[str, Any]:
        groups = bridge.group_choices()
        return {
            "groups": groups,
            "defaults": bridge.study_defaults(),
            "flags": {r: bridge.runtime_flags(r) for r in groups["runtime"]},
            "experiments": sorted(
                p.stem for p in (c.settings.experiments_dir / "experiment").glob("*.yaml")
            ),
        }

    return await _call(load)


@router.post("/validate", summary="Validate a study with the CLI's own checks")
async def validate(body: StudyRequest, request: Request) -> dict[str, Any]:
    return await _call(console(request).validate, body.model_dump())


@router.post("/studies", summary="Start a study as its own process", status_code=201)
async def start(body: StudyRequest, request: Request) -> dict[str, str]:
    return await _call(console(request).start, body.model_dump())


@router.get("/studies", summary="Every study in the tracking store")
async def studies(request: Request) -> list[dict[str, Any]]:
    return await _call(console(request).studies_json)


@router.get("/studies/{study_id}", summary="One study: status, counts, best trial, verdict")
async def study(study_id: str, request: Request) -> dict[str, Any]:
    return await _call(console(request).study_json, study_id)


@router.post("/studies/{study_id}/stop", summary="Stop a study (Ctrl-C's clean path)")
async def stop(study_id: str, request: Request) -> dict[str, Any]:
    return await _call(console(request).stop, study_id)


@router.post("/studies/{study_id}/resume", summary="Run a stopped study's command again")
async def resume(study_id: str, request: Request) -> dict[str, str]:
    return await _call(console(request).resume, study_id)


@router.get("/studies/{study_id}/events", summary="Server-sent events: the study's status")
async def events(study_id: str, request: Request) -> EventSourceResponse:
    c = console(request)
    await _call(c.study_json, study_id)  # 404 before the stream starts

    async def stream() -> AsyncIterator[dict[str, str]]:
        last = None
        while not await request.is_disconnected():
            state = await run_in_threadpool(c.study_json, study_id)
            text = json.dumps(state, sort_keys=True)
            if text != last:
                last = text
                yield {"event": "status", "data": text}
            if state["status"] != "running":
                yield {"event": "end", "data": state["status"]}
                return
            await asyncio.sleep(c.settings.refresh_s)

    return EventSourceResponse(stream(), ping=15)


@router.get("/trials/{run_id}", summary="One trial: params, metrics, phase, logs offered")
async def trial(run_id: str, request: Request) -> dict[str, Any]:
    c = console(request)

    def load() -> dict[str, Any]:
        t, s = c.trial(run_id)
        return c.scrub({**t.__dict__, "study_id": s.id, "logs": list(files.TRIAL_LOGS)})

    return await _call(load)


def _log_path(c: Console, run_id: str, name: str):
    if name not in files.TRIAL_LOGS:
        raise NotFound(f"no log {name!r}; logs: {', '.join(files.TRIAL_LOGS)}")
    t, s = c.trial(run_id)
    job = files.job_dir(s.sweep_dir, t.index)
    try:
        if job is None:
            raise files.FileRefused(f"the job directory of {t.name} is not on this host")
        return files.inside(job, files.TRIAL_LOGS[name]), t
    except files.FileRefused as e:
        if t.status != "running" and name in files.TRIAL_ARTIFACTS:
            kept = c.artifact(run_id, files.TRIAL_ARTIFACTS[name])
            if kept is not None:
                return kept, t
        raise NotFound(str(e)) from e


@router.get("/trials/{run_id}/logs/{name}", summary="A trial's log (engine, genai-bench, trial)")
async def log_text(run_id: str, name: str, request: Request, offset: int = 0) -> dict[str, Any]:
    c = console(request)

    def load() -> dict[str, Any]:
        path, _ = _log_path(c, run_id, name)
        text, nxt = files.read_chunk(path, max(0, offset))
        return {"text": bridge.scrub(text, c.secrets()), "offset": nxt}

    return await _call(load)


@router.get("/trials/{run_id}/logs/{name}/stream", summary="A trial's log, live (SSE)")
async def log_stream(run_id: str, name: str, request: Request) -> EventSourceResponse:
    c = console(request)
    await _call(_wait_for_log, c, run_id, name, 0.0)

    async def stream() -> AsyncIterator[dict[str, str]]:
        offset, quiet = 0, 0
        while not await request.is_disconnected():
            path, t = await _call(_wait_for_log, c, run_id, name, 0.0)
            if path is not None:
                text, offset = await run_in_threadpool(files.read_chunk, path, offset)
                if text:
                    quiet = 0
                    yield {"event": "log", "data": bridge.scrub(text, c.secrets())}
            running = await run_in_threadpool(lambda: c.trial(run_id)[0].status == "running")
            quiet = quiet + 1 if not running else 0
            if quiet > 1:  # ended, and the last read found nothing new
                yield {"event": "end", "data": "trial ended"}
                return
            await asyncio.sleep(1.0)

    return EventSourceResponse(stream(), ping=15)


def _wait_for_log(c: Console, run_id: str, name: str, _: float):
    """The log's path (None while the trial has not written it yet) and the trial."""
    try:
        return _log_path(c, run_id, name)
    except NotFound:
        t, _s = c.trial(run_id)  # a missing trial is a 404
        if t.status != "running":
            raise
        return None, t


@router.get("/studies/{study_id}/files/{path:path}", summary="A file of the study's directory")
async def study_file(study_id: str, path: str, request: Request):
    from fastapi.responses import FileResponse, PlainTextResponse

    c = console(request)

    def load():
        study, _ = c.resolve(study_id)
        if study is None:
            raise NotFound("the study has not started yet")
        try:
            return files.inside(study.sweep_dir, path)
        except files.FileRefused as e:
            raise NotFound(str(e)) from e

    found = await _call(load)
    if found.suffix in (".png", ".svg", ".jpg"):
        return FileResponse(found)
    text = found.read_text(errors="replace")[: files.MAX_READ]
    return PlainTextResponse(bridge.scrub(text, c.secrets()))


@router.post("/experiments", summary="Save a study as a Hydra experiment file", status_code=201)
async def save_experiment(body: ExperimentRequest, request: Request) -> dict[str, str]:
    c = console(request)

    def save() -> dict[str, str]:
        if bridge.override_secrets(body.overrides):
            raise experiments.ExperimentError(
                "a secret value is among the overrides: an experiment file goes into version "
                "control; read it from the environment instead (e.g. "
                "benchmark.api_key=${oc.env:MY_API_KEY})"
            )
        result = c.validate({"overrides": body.overrides})
        if not result["ok"]:
            raise InvalidStudy([e["message"] for e in result["errors"]], result["command"])
        path = experiments.save(c.settings.experiments_dir, body.name, body.overrides, body.comment)
        args = experiments.launch_args(c.settings.experiments_dir, body.name)
        return {"path": str(path), "command": c.command(args), "experiment": body.name}

    return await _call(save)
