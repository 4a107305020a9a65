"""Confirmation stage: re-run the best configurations and the defaults, state the verdict.

- :mod:`~autotune.confirm.stats`: means, intervals, gains as ratios, noise (pure)
- :mod:`~autotune.confirm.verdict`: the verdict rule and its sentence (pure)
- :mod:`~autotune.confirm.plan`: which configurations, in which order (pure)
- :mod:`~autotune.confirm.stage`: the runs, given a ``run_one(params, label)`` callable
- :mod:`~autotune.confirm.study`: the stage at a study's end (MLflow, the trial pipeline)
"""

from autotune.confirm.stage import Candidate, RunResult, run_confirmation
from autotune.confirm.verdict import Measured, Verdict, decide

__all__ = ["Candidate", "Measured", "RunResult", "Verdict", "decide", "run_confirmation"]
