"""SGLang's start-up defaults by version, for the versions the simulator imitates.

SGLang computes several settings at start-up when they are not given, and the rules
changed between releases. Every rule here cites the released wheel it was read from
(``V:file Lstart-end``, ``sglang/srt/<file>``; collected in
``shared/notes/sglang-versions.md``). Versions read: 0.4.0, 0.4.3, 0.4.6, 0.4.9,
0.5.0rc2, 0.5.1.post1, 0.5.3, 0.5.6.post2, 0.5.9, 0.5.10. A version in between takes
the rules of the newest version read at or below it (e.g. 0.4.4 -> 0.4.3's, 0.5.2 ->
0.5.1.post1's): an assumption, not a reading. Versions before 0.4.0 or after 0.5.10
are refused (``UnsupportedVersion``) rather than guessed.

    >>> v = sglang_defaults("0.5.6.post2")
    >>> v.mem_fraction_static(gpu_memory_mb("h200_sxm", 144384.0), tp=1, chunked_prefill=8192,
    ...                       graph_max_bs=256)
    0.907
    >>> sglang_defaults("0.4.3").mem_fraction_static(81559.0, 1, 8192, 160)
    0.88
    >>> sglang_defaults("0.4.3").schedule_policy, sglang_defaults("0.5.1.post1").schedule_policy
    ('lpm', 'fcfs')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_SGLANG_VERSION = "0.5.5.post3"  # conf/runtime/sglang.yaml's image tag
OLDEST = (0, 4, 0)
NEWEST = (0, 5, 10)

# ``nvidia-smi memory.total`` in MiB, which SGLang's rules read (get_device_memory_capacity);
# the profiles' capacity (aiconfigurator's) is the nominal 80 / 141 GiB.
SMI_MEMORY_MB = {"h100_sxm": 81559.0, "h200_sxm": 143771.0}

# Bands of 0.4.0-0.4.3 (0.4.0:server_args.py L158-168; 0.4.3 L195-206): by TP only.
_TP_TABLE = ((16, 0.79), (8, 0.81), (4, 0.85), (2, 0.87), (1, 0.88))
# Piecewise CUDA graph, on by default from 0.5.10: 58 capture sizes x 8 MiB for
# non-MLA models, 1536 MiB for MLA (0.5.10:server_args.py L1141-1330, L637).
PIECEWISE_GRAPH_MB = {False: 58 * 8.0, True: 1536.0}


def gpu_memory_mb(gpu: str, profile_mb: float) -> float:
    """The GPU memory SGLang's rules see: ``nvidia-smi``'s total where known, else the profile's."""
    return SMI_MEMORY_MB.get(gpu, profile_mb)


class UnsupportedVersion(ValueError):
    """An SGLang version whose defaults the simulator has not read."""


def parse_version(text: str) -> tuple[int, int, int]:
    """``"0.5.6.post2"`` -> ``(0, 5, 6)``; ``"v0.5.0rc2"`` -> ``(0, 5, 0)``.

    >>> parse_version("v0.5.0rc2")
    (0, 5, 0)
    """
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", str(text or ""))
    if not m:
        raise UnsupportedVersion(f"not an SGLang version: {text!r} (expected e.g. 0.5.6.post2)")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass(frozen=True)
class SGLangDefaults:
    """The start-up rules of one SGLang release line (see the module docstring)."""

    version: str
    release: tuple[int, int, int]

    def _at_least(self, *release: int) -> bool:
        return self.release >= release

    @property
    def schedule_policy(self) -> str:
        """``lpm`` until 0.4.3, ``fcfs`` from 0.4.6 (0.4.6:server_args.py ``schedule_policy``)."""
        return "fcfs" if self._at_least(0, 4, 6) else "lpm"

    @property
    def retract_to_next_step(self) -> bool:
        """Retraction frees only what the next decode step needs from 0.5.3
        (0.5.3:schedule_batch.py L1504 ``check_decode_mem``); up to 0.5.1 it keeps
        retracting until 20 steps per request fit (0.5.1.post1 L1397)."""
        return self._at_least(0, 5, 3)

    @property
    def ratio_denominator_plus_one(self) -> bool:
        """After a retraction, new_token_ratio's denominator gets +1 from 0.5.5."""
        return self._at_least(0, 5, 5)

    @property
    def piecewise_cuda_graph(self) -> bool:
        """Piecewise CUDA graph on by default from 0.5.10 (0.5.10:server_args.py L637)."""
        return self._at_least(0, 5, 10)

    def chunked_prefill_size(self, gpu_mem_mb: float) -> int:
        """Default ``chunked_prefill_size`` by GPU memory (see the notes' table, section 2)."""
        if self._at_least(0, 5, 3):
            bands = ((35, 2048), (60, 4096), (160, 8192))
        elif self._at_least(0, 4, 9):
            bands = ((35, 2048), (160, 8192))
        elif self._at_least(0, 4, 3):
            return 8192
        else:
            bands = ((25, 2048), (float("inf"), 8192))
        for limit_gb, size in bands:
            if gpu_mem_mb < limit_gb * 1024:
                return size
        return 16384

    def cuda_graph_max_bs(self, gpu_mem_mb: float, tp: int) -> int:
        """Largest captured decode batch: from 0.5.3 by memory and TP (0.5.3:server_args.py
        L542-672); before, 160, extended to 256 on GPUs above 80 GiB (0.4.6: mem > 81920
        MiB, cuda_graph_runner.py L119-139; 0.4.9-0.5.1: mem > 90 GiB)."""
        if self._at_least(0, 5, 3):
            for limit_gb, small, large in (
                (20, 8, 8),
                (35, 24, 80),
                (60, 32, 160),
                (160, 256, 512),
            ):
                if gpu_mem_mb < limit_gb * 1024:
                    return small if tp < 4 else large
            return 512
        if self._at_least(0, 4, 9):
            return 256 if gpu_mem_mb > 90 * 1024 else 160
        if self._at_least(0, 4, 6):
            return 256 if gpu_mem_mb > 81920 else 160
        return 160

    def mem_fraction_static(
        self,
        gpu_mem_mb: float,
        tp: int,
        chunked_prefill: int,
        graph_max_bs: int,
        *,
        dp_attention: bool = False,
        mla: bool = False,
    ) -> float:
        """Default ``mem_fraction_static`` (pp = 1, no speculative decoding, text model);
        ``gpu_mem_mb`` as ``gpu_memory_mb`` gives it."""
        mem = gpu_mem_mb
        if self._at_least(0, 5, 3):
            # 0.5.3:server_args.py L542-672; 0.5.6.post2 L728-886; 0.5.9 L911-1059.
            reserved = 512 + max(chunked_prefill, 2048) * 1.5 + graph_max_bs * 2 + tp / 8 * 1024
            if self.piecewise_cuda_graph and not dp_attention:
                reserved += PIECEWISE_GRAPH_MB[mla]  # 0.5.10 L1141-1330
            if mem > 60 * 1024:
                reserved = max(reserved, 10 * 1024)
            return round((mem - reserved) / mem, 3)
        if self._at_least(0, 4, 9):
            # 0.4.9:server_args.py L280-319; 0.5.1.post1 L354-393 (+4096 with dp-attention).
            base = 9.5 if mem < 90 * 1024 else 12.0
            reserved = (base + tp / 2) * 1024 + (4096 if dp_attention else 0)
            return round((mem - reserved) / mem, 3)
        if self._at_least(0, 4, 6) and mem > 81920:
            return (mem - 13 * 1024) / mem  # 0.4.6:server_args.py L224-238, not rounded
        return next(frac for min_tp, frac in _TP_TABLE if tp >= min_tp)


def version_from_image_tag(tag: str) -> str | None:
    """The SGLang version of an ``lmsysorg/sglang`` image tag, or None (``latest``, ``dev``).

    >>> version_from_image_tag("v0.5.5.post3-cu129-amd64"), version_from_image_tag("latest")
    ('0.5.5.post3', None)
    """
    m = re.match(r"^v?(\d+\.\d+(?:\.\d+)?(?:\.?(?:post|rc)\d+)?)", str(tag or ""))
    return m.group(1) if m else None


def sglang_defaults(version: str | None = None) -> SGLangDefaults:
    """The rules of ``version`` (default ``DEFAULT_SGLANG_VERSION``).

    Raises ``UnsupportedVersion`` (a ValueError) outside 0.4.0 ... 0.5.10.
    """
    text = str(version or DEFAULT_SGLANG_VERSION).strip()
    release = parse_version(text)
    if not OLDEST <= release <= NEWEST:
        raise UnsupportedVersion(
            f"SGLang {text} is not simulated: its start-up defaults were read for "
            f"0.4.0 ... 0.5.10 only (autotune/sim/versions.py)"
        )
    return SGLangDefaults(version=text.removeprefix("v"), release=release)
