"""Fault knobs of the simulated SGLang server (``--sim-fault``, repeatable).

They let the tuner's failure handling be tested without a GPU. Each knob imitates
what a real SGLang server does when that failure happens (exit code, log text,
HTTP behaviour):

``crash-after=S``
    S seconds after becoming ready, log "Scheduler hit an exception: ..." and
    exit 1 (the scheduler subprocess of a real server died).
``hang-start``
    Never become ready: ``/health`` stays 503 and the ready line never appears.
``fail-start=oom|bad-flag|cuda-graph``
    Fail at start-up with SGLang's message: ``oom`` a ``torch.OutOfMemoryError``
    traceback (exit 1), ``cuda-graph`` "Capture cuda graph failed" with SGLang's
    hints (exit 1), ``bad-flag`` an argparse "ambiguous option" error (exit 2, as
    argparse exits).
``no-tokens``
    Ready (``/health`` 200) but generation never produces a token: requests hang.
``error-rate=P``
    A fraction P (0..1) of generation requests is answered with HTTP 500.
``kill-after-requests=N``
    Serve N generation requests, then SIGKILL itself when request N+1 arrives.

    >>> parse_faults(["crash-after=2.5", "error-rate=0.1"]).crash_after_s
    2.5
"""

from __future__ import annotations

from dataclasses import dataclass

FAIL_START_KINDS = ("oom", "bad-flag", "cuda-graph")


@dataclass(frozen=True)
class Faults:
    crash_after_s: float | None = None
    hang_start: bool = False
    fail_start: str | None = None
    no_tokens: bool = False
    error_rate: float = 0.0
    kill_after_requests: int | None = None

    def describe(self) -> list[str]:
        """The active knobs in ``--sim-fault`` syntax (for logs and /get_server_info)."""
        out = []
        if self.crash_after_s is not None:
            out.append(f"crash-after={self.crash_after_s:g}")
        if self.hang_start:
            out.append("hang-start")
        if self.fail_start:
            out.append(f"fail-start={self.fail_start}")
        if self.no_tokens:
            out.append("no-tokens")
        if self.error_rate:
            out.append(f"error-rate={self.error_rate:g}")
        if self.kill_after_requests is not None:
            out.append(f"kill-after-requests={self.kill_after_requests}")
        return out


def parse_faults(specs: list[str] | None) -> Faults:
    """Parse ``--sim-fault`` values; raises ValueError with a readable message.

    >>> parse_faults(["fail-start=oom"]).fail_start
    'oom'
    """
    kw: dict = {}
    for spec in specs or []:
        name, _, value = spec.partition("=")
        name = name.strip()
        value = value.strip()
        try:
            if name == "crash-after":
                kw["crash_after_s"] = _non_negative(float(value))
            elif name == "hang-start" and not value:
                kw["hang_start"] = True
            elif name == "fail-start":
                if value not in FAIL_START_KINDS:
                    raise ValueError(f"choose one of {', '.join(FAIL_START_KINDS)}")
                kw["fail_start"] = value
            elif name == "no-tokens" and not value:
                kw["no_tokens"] = True
            elif name == "error-rate":
                rate = float(value)
                if not 0.0 <= rate <= 1.0:
                    raise ValueError("must be within 0..1")
                kw["error_rate"] = rate
            elif name == "kill-after-requests":
                kw["kill_after_requests"] = int(_non_negative(int(value)))
            else:
                raise ValueError("unknown fault")
        except ValueError as err:
            raise ValueError(f"invalid --sim-fault {spec!r}: {err}") from None
    return Faults(**kw)


def _non_negative(x: float) -> float:
    if x < 0:
        raise ValueError("must be >= 0")
    return x


# Start-up failure texts, as real SGLang (0.5.x) prints them. The server wraps
# them in a traceback where SGLang has one.
OOM_TRACEBACK = """\
Traceback (most recent call last):
  File "/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py", line 2612, in run_scheduler_process
    scheduler = Scheduler(server_args, port_args, gpu_id, tp_rank, moe_ep_rank, pp_rank, dp_rank)
  File "/sgl-workspace/sglang/python/sglang/srt/model_executor/model_runner.py", line 309, in __init__
    self.load_model()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {alloc:.2f} GiB. GPU 0 has a total \
capacity of {total:.2f} GiB of which {free:.2f} GiB is free. Including non-PyTorch memory, this \
process has {used:.2f} GiB memory in use. Of the allocated memory {used:.2f} GiB is allocated by \
PyTorch, and 0 bytes is reserved by PyTorch but unallocated. If reserved but unallocated memory \
is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  \
See documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)
"""

CUDA_GRAPH_TRACEBACK = """\
Traceback (most recent call last):
  File "/sgl-workspace/sglang/python/sglang/srt/model_executor/cuda_graph_runner.py", line 381, in __init__
    self.capture()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB.

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py", line 2612, in run_scheduler_process
    scheduler = Scheduler(server_args, port_args, gpu_id, tp_rank, moe_ep_rank, pp_rank, dp_rank)
  File "/sgl-workspace/sglang/python/sglang/srt/model_executor/model_runner.py", line 2001, in init_device_graphs
    self.graph_runner = graph_runners[self.device](self)
Exception: Capture cuda graph failed: CUDA out of memory. Tried to allocate 1.00 GiB.
Possible solutions:
1. set --mem-fraction-static to a smaller value (e.g., 0.8 or 0.7)
2. set --cuda-graph-max-bs to a smaller value (e.g., 16)
3. disable torch compile by not using --enable-torch-compile
4. disable CUDA graph by --disable-cuda-graph. (Not recommended. Huge performance loss)
Open an issue on GitHub https://github.com/sgl-project/sglang/issues/new/choose
"""

SCHEDULER_CRASH = """\
Scheduler hit an exception: Traceback (most recent call last):
  File "/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py", line 2625, in run_scheduler_process
    scheduler.event_loop_overlap()
  File "/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py", line 1004, in event_loop_overlap
    batch_result = self.run_batch(batch)
RuntimeError: CUDA error: an illegal memory access was encountered (simulated fault crash-after={after:g})
"""

STARTUP_FAILURE_TRACEBACK = """\
Scheduler hit an exception: Traceback (most recent call last):
  File "/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py", line 2612, in run_scheduler_process
    scheduler = Scheduler(server_args, port_args, gpu_id, tp_rank, moe_ep_rank, pp_rank, dp_rank)
  File "/sgl-workspace/sglang/python/sglang/srt/managers/tp_worker.py", line 94, in __init__
    self.model_runner = ModelRunner(
  File "/sgl-workspace/sglang/python/sglang/srt/model_executor/model_runner.py", line 1436, in init_memory_pool
    raise RuntimeError(
{last}
"""
