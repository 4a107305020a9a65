"""The simulated server's HTTP routes: SGLang's OpenAI-compatible API and its extras.

Endpoints: POST /v1/chat/completions, /v1/completions (stream or not),
/flush_cache; GET /v1/models, /health, /health_generate, /get_server_info,
/server_info, /get_model_info, /model_info, /metrics (with --enable-metrics).

A request's simulated life starts when its handler is entered; its prompt is
tokenised in a worker thread (the tokenizer releases the GIL) while the engine's
schedule goes on. The first token leaves exactly at the simulated TTFT; the rest is
streamed in a few coarse chunks (``--sim-max-chunks``) so that two CPU cores keep
up at high concurrency, and ``usage`` reports the simulated token counts
(genai-bench derives TPOT from e2e, TTFT and the count). The per-request faults
(``error-rate``, ``kill-after-requests``, ``no-tokens``) strike here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from aiohttp import web

from autotune.sim.driver import InFlight, RealTimeDriver
from autotune.sim.faults import Faults
from autotune.sim.prefix import token_blocks
from autotune.sim.prompt_tokens import PromptCounter, tokenizer_dir
from autotune.sim.server_args import table_version
from autotune.sim.types import EngineStats

logger = logging.getLogger("sglang.srt.entrypoints.http_server")

DEFAULT_MAX_TOKENS = 128  # the simulator has no EOS: an unset max_tokens generates this many
FILLER = " the"  # one simulated token of streamed text; its content does not matter


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def _error_response(status: int, message: str, kind: str) -> web.Response:
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return web.json_response(body, status=status)


def chunk_bounds(n: int, max_chunks: int) -> list[int]:
    """Token counts after which a chunk is streamed: 1, then evenly up to ``n``.

    >>> chunk_bounds(128, 5)
    [1, 32, 64, 96, 128]
    """
    if n <= 1:
        return [n]
    k = max(1, min(max_chunks - 1, n - 1))
    return [1] + sorted({max(2, math.ceil(n * i / k)) for i in range(1, k + 1)})


class SimServer:
    """The HTTP routes of one simulated server, over its ``RealTimeDriver`` (once loaded)."""

    def __init__(self, args: argparse.Namespace, given: set[str], faults: Faults) -> None:
        self.args = args
        self.given = given
        self.faults = faults
        self.served_name = args.served_model_name or args.model_path
        self.driver: RealTimeDriver | None = None
        self.engine_info: dict[str, Any] = {}
        self.ready = False
        self.stopping = False
        self.counter = PromptCounter(tokenizer_dir(args))
        self.context_len = args.context_length or self.counter.model_max_length or 131072
        self.t0 = time.monotonic()  # the engine's time zero
        self._rng = random.Random(args.sim_seed)
        self._num_gen_requests = 0
        self.driver_task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tokenizer")
        self.metrics = None
        if args.enable_metrics:
            from autotune.sim.metrics import SimMetrics

            self.metrics = SimMetrics(self.served_name)

    def attach(self, driver: RealTimeDriver, info: dict[str, Any]) -> None:
        """Serve through ``driver`` (the loaded engine) and start its loop."""
        self.driver = driver
        self.engine_info = info
        self.driver_task = asyncio.create_task(driver.run())
        self.context_len = int(
            info.get("context_length") or info.get("context_len") or self.context_len
        )

    def _add(self, req: InFlight) -> None:
        assert self.driver is not None
        self.driver.add(req)

    def _abort(self, req: InFlight) -> None:
        if self.driver is not None and self.driver.abort(req) and self.metrics:
            self.metrics.on_request_aborted(
                prompt_tokens=req.prompt_tokens, output_tokens=req.tokens
            )

    def _stats(self) -> EngineStats:
        return self.driver.stats() if self.driver is not None else EngineStats()

    # -- HTTP --------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_post("/v1/chat/completions", self.chat_completions)
        r.add_post("/v1/completions", self.completions)
        r.add_get("/v1/models", self.models)
        r.add_get("/health", self.health)
        r.add_get("/health_generate", self.health_generate)
        for path in ("/get_server_info", "/server_info"):
            r.add_get(path, self.server_info)
        for path in ("/get_model_info", "/model_info"):
            r.add_get(path, self.model_info)
        r.add_route("*", "/flush_cache", self.flush_cache)
        if self.args.enable_metrics:
            r.add_get("/metrics", self.prom_metrics)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        key = self.args.api_key
        if (
            key
            and not request.path.startswith(("/health", "/metrics"))
            and request.headers.get("Authorization", "") != f"Bearer {key}"
        ):
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.ready and not self.stopping else 503)

    async def health_generate(self, request: web.Request) -> web.Response:
        if not self.ready or self.stopping:
            return web.Response(status=503)
        req = InFlight(f"HEALTH_CHECK_{uuid.uuid4().hex}", 1, 1, time.monotonic())
        req.next_emit = 1 << 62
        if not self.faults.no_tokens:
            self._add(req)
        timeout = float(os.environ.get("SGLANG_HEALTH_CHECK_TIMEOUT", "20"))
        try:
            await asyncio.wait_for(req.event.wait(), timeout)
            while not req.finished:
                req.event.clear()
                await asyncio.wait_for(req.event.wait(), timeout)
            return web.Response(status=200)
        except TimeoutError:
            logger.error(
                "Health check failed. Server couldn't get a response from detokenizer for last %d seconds.",
                int(timeout),
            )
            return web.Response(status=503)
        finally:
            if self.driver is not None:
                self.driver.discard(req.rid)

    async def models(self, request: web.Request) -> web.Response:
        card = {
            "id": self.served_name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "sglang",
            "root": self.served_name,
            "max_model_len": self.context_len,
        }
        return web.json_response({"object": "list", "data": [card]})

    def server_info_dict(self) -> dict[str, Any]:
        """All ServerArgs, overlaid with the engine's effective settings (SGLang's keys)."""
        info = {k: v for k, v in vars(self.args).items() if not k.startswith("sim_")}
        info.update(self.engine_info)
        info["model_path"] = self.args.model_path
        info["served_model_name"] = self.served_name
        info["tokenizer_path"] = str(tokenizer_dir(self.args))
        info["api_key"] = None  # never echoed
        if self.driver is not None:
            states = self.engine_info.get("internal_states") or [{}]
            info["internal_states"] = [{**states[0], **asdict(self.driver.stats())}]
        info.setdefault("version", f"{table_version()} (simulated)")
        info["simulated"] = True
        info["sim_model"] = self.args.sim_model
        info["sim_gpu"] = self.args.sim_gpu
        info["sim_dtype"] = self.args.sim_dtype
        info["sim_seed"] = self.args.sim_seed
        info["sim_faults"] = self.faults.describe()
        info.setdefault("ignored_flags", [])
        return info

    async def server_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.server_info_dict(), dumps=_dumps_default_str)

    async def model_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "model_path": self.args.model_path,
                "tokenizer_path": str(tokenizer_dir(self.args)),
                "served_model_name": self.served_name,
                "is_generation": True,
                "preferred_sampling_params": None,
                "weight_version": self.args.weight_version,
                "has_image_understanding": False,
                "has_audio_understanding": False,
                "simulated": True,
            }
        )

    async def flush_cache(self, request: web.Request) -> web.Response:
        flush = getattr(self.driver.engine if self.driver else None, "flush_cache", None)
        if callable(flush):
            flush()
        return web.Response(
            text="Cache flushed.\nPlease check backend logs for more details. (When there are running or waiting requests, the operation will not be performed.)\n"
        )

    async def prom_metrics(self, request: web.Request) -> web.Response:
        from autotune.sim.metrics import CONTENT_TYPE

        assert self.metrics is not None
        body = self.metrics.render(self._stats())
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE
        return resp

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        t_start = time.monotonic()
        if not self.ready or self.stopping:
            return _error_response(503, "The server is not ready.", "ServiceUnavailableError")
        self._num_gen_requests += 1
        kill_after = self.faults.kill_after_requests
        if kill_after is not None and self._num_gen_requests > kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.faults.error_rate and self._rng.random() < self.faults.error_rate:
            return _error_response(
                500,
                f"Internal server error (simulated fault error-rate={self.faults.error_rate:g})",
                "InternalServerError",
            )
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise _HTTPError(400, "The request body must be a JSON object.")
            # Tokenising releases the GIL: off the event loop, the steps stay on time.
            ids = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._prompt_ids, body, chat
            )
            prompt_tokens = len(ids)
            output_len = self._output_len(body, prompt_tokens)
        except _HTTPError as err:
            return _error_response(err.status, str(err), err.kind)
        except (ValueError, TypeError) as err:
            return _error_response(400, f"Invalid request: {err}", "BadRequestError")

        req = InFlight(uuid.uuid4().hex, prompt_tokens, output_len, t_start)
        req.blocks = token_blocks(ids)
        stream = bool(body.get("stream"))
        if not stream:
            req.next_emit = 1 << 62  # only the finish matters
        if not self.faults.no_tokens:
            self._add(req)
        try:
            if stream:
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                return await self._stream(request, req, chat, usage)
            return await self._respond(req, chat)
        finally:
            if not req.finished:
                self._abort(req)  # client went away (handler cancelled) or engine aborted

    def _prompt_ids(self, body: dict[str, Any], chat: bool) -> list[int]:
        """The prompt's token ids: their count is the usage, their blocks the cache key."""
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _HTTPError(400, "messages must be a non-empty list.")
            return self.counter.chat_ids(messages)
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            if len(prompt) == 1 and isinstance(prompt[0], (str, list)):
                prompt = prompt[0]
            elif prompt and all(isinstance(t, int) for t in prompt):
                return list(prompt)
            else:
                raise _HTTPError(400, "Batched prompts are not supported by the simulator.")
        if isinstance(prompt, list):
            return [int(t) for t in prompt]
        if not isinstance(prompt, str):
            raise _HTTPError(400, "prompt must be a string or a list of token ids.")
        return self.counter.text_ids(prompt)

    def _output_len(self, body: dict[str, Any], prompt_tokens: int) -> int:
        if (body.get("n") or 1) != 1:
            raise _HTTPError(400, "n > 1 is not supported by the simulator.")
        max_tokens = body.get("max_completion_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_tokens")
        if max_tokens is None:
            max_tokens = min(DEFAULT_MAX_TOKENS, max(1, self.context_len - prompt_tokens))
        max_tokens = int(max_tokens)
        if max_tokens < 1:
            raise _HTTPError(400, "max_tokens must be at least 1.")
        if prompt_tokens >= self.context_len:
            raise _HTTPError(
                400,
                f"The input ({prompt_tokens} tokens) is longer than the model's context length "
                f"({self.context_len} tokens).",
            )
        if prompt_tokens + max_tokens >= self.context_len:
            raise _HTTPError(
                400,
                f"Requested token count exceeds the model's maximum context length of "
                f"{self.context_len} tokens. You requested a total of {prompt_tokens + max_tokens} "
                f"tokens: {prompt_tokens} tokens from the input messages and {max_tokens} tokens "
                f"for the completion. Please reduce the number of tokens in the input messages or "
                f"the completion to fit within the limit.",
            )
        # The scheduler cannot hold a prompt larger than the KV pool (SGLang aborts it).
        pool = int(self.engine_info.get("max_total_num_tokens") or 0)
        if pool and prompt_tokens > min(self.context_len, pool) - 6:
            raise _HTTPError(
                400,
                f"Input length ({prompt_tokens} tokens) exceeds the maximum allowed length "
                f"({min(self.context_len, pool) - 6} tokens). Use a shorter input or enable "
                f"--allow-auto-truncate.",
            )
        return max_tokens

    def _usage(self, req: InFlight) -> dict[str, Any]:
        return {
            "prompt_tokens": req.prompt_tokens,
            "total_tokens": req.prompt_tokens + req.tokens,
            "completion_tokens": req.tokens,
            "prompt_tokens_details": {"cached_tokens": req.cached}
            if self.args.enable_cache_report
            else None,
            "reasoning_tokens": 0,
        }

    async def _stream(
        self, request: web.Request, req: InFlight, chat: bool, include_usage: bool
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        model = json.dumps(self.served_name)
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = f'data: {{"id":"{req.rid}","object":"{obj}","created":{req.created},"model":{model},"choices":['
        bounds = chunk_bounds(req.output_len, max(2, self.args.sim_max_chunks))
        sent = 0
        last_t = 0.0
        metrics = self.metrics
        while True:
            await req.event.wait()
            req.event.clear()
            if req.aborted:
                err = {
                    "error": {
                        "message": "The request was aborted.",
                        "type": "InternalServerError",
                        "code": 500,
                    }
                }
                await resp.write(f"data: {json.dumps(err)}\n\ndata: [DONE]\n\n".encode())
                return resp
            n = req.tokens
            while bounds and bounds[0] <= n:
                bounds.pop(0)
            req.next_emit = bounds[0] if bounds else req.output_len
            if n <= sent and not req.finished:
                continue
            now = time.monotonic()
            finish = '"length"' if req.finished else "null"
            text = FILLER * (n - sent)
            if chat:
                role = '"role":"assistant",' if sent == 0 else ""
                choice = f'{{"index":0,"delta":{{{role}"content":"{text}"}},"logprobs":null,"finish_reason":{finish},"matched_stop":null}}'
            else:
                choice = f'{{"index":0,"text":"{text}","logprobs":null,"finish_reason":{finish},"matched_stop":null}}'
            out = f'{head}{choice}],"usage":null}}\n\n'
            if sent == 0:
                req.t_first = now
            if metrics is not None:
                if sent == 0:
                    metrics.on_first_token(now - req.t_start)
                else:
                    metrics.on_chunk(now - last_t, n - sent)
            sent, last_t = n, now
            if req.finished:
                if include_usage:
                    out += f'{head}],"usage":{json.dumps(self._usage(req))}}}\n\n'
                out += "data: [DONE]\n\n"
                self._on_finished(req, now)
                await resp.write(out.encode())
                return resp
            await resp.write(out.encode())

    async def _respond(self, req: InFlight, chat: bool) -> web.Response:
        while not req.finished:
            await req.event.wait()
            req.event.clear()
            if req.aborted:
                return _error_response(500, "The request was aborted.", "InternalServerError")
        now = time.monotonic()
        if self.metrics is not None:
            # Not streamed: no TTFT/ITL samples beyond what the client sees (the whole answer).
            self.metrics.on_first_token(now - req.t_start)
        self._on_finished(req, now)
        text = FILLER * req.tokens
        if chat:
            choice = {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "reasoning_content": None,
                    "tool_calls": None,
                },
                "logprobs": None,
                "finish_reason": "length",
                "matched_stop": None,
            }
            obj = "chat.completion"
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": "length",
                "matched_stop": None,
            }
            obj = "text_completion"
        body = {
            "id": req.rid,
            "object": obj,
            "created": req.created,
            "model": self.served_name,
            "choices": [choice],
            "usage": self._usage(req),
        }
        return web.json_response(body)

    def _on_finished(self, req: InFlight, now: float) -> None:
        if self.args.log_requests:
            logger.info(
                "Finish: rid=%s, prompt_tokens=%d, completion_tokens=%d, cached_tokens=%d, "
                "arrival=%.4f, queued=%.4f, ttft=%.4f, e2e_latency=%.4f",
                req.rid,
                req.prompt_tokens,
                req.tokens,
                req.cached,
                req.t_start - self.t0,
                req.t_queued - self.t0,
                (req.t_first or now) - req.t_start,
                now - req.t_start,
            )
        if self.metrics is not None:
            self.metrics.on_request_finished(
                prompt_tokens=req.prompt_tokens,
                output_tokens=req.tokens,
                cached_tokens=req.cached,
                e2e_s=now - req.t_start,
            )


def _dumps_default_str(obj: Any) -> str:
    return json.dumps(obj, default=str)
