"""What a preflight check says: a status, a one-line verdict, and the fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # the study can run, but something will likely cost time
    FAIL = "fail"  # the study would fail: it does not start


@dataclass(frozen=True)
class Check:
    """One check's outcome.

    >>> Check("disk", Status.FAIL, "0.4 GiB free in /out", "free space or set hydra.sweep.dir").blocking
    True
    """

    name: str
    status: Status
    verdict: str
    fix: str = ""

    @property
    def blocking(self) -> bool:
        return self.status is Status.FAIL

    @classmethod
    def ok(cls, name: str, verdict: str) -> Check:
        return cls(name, Status.OK, verdict)

    @classmethod
    def warn(cls, name: str, verdict: str, fix: str) -> Check:
        return cls(name, Status.WARN, verdict, fix)

    @classmethod
    def fail(cls, name: str, verdict: str, fix: str) -> Check:
        return cls(name, Status.FAIL, verdict, fix)


@dataclass
class Report:
    """All checks of one preflight, in the order they were listed."""

    target: str
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def blocking(self) -> list[Check]:
        return [c for c in self.checks if c.blocking]

    @property
    def ok(self) -> bool:
        return not self.blocking

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "checks": [{**asdict(c), "status": str(c.status)} for c in self.checks],
        }

    def messages(self) -> list[str]:
        """One line per blocking problem: verdict, then the fix."""
        return [f"{c.name}: {c.verdict}. Fix: {c.fix}" for c in self.blocking]
