"""What the confirmation stage runs, and in which order.

- :func:`top_distinct`: the best ``k`` successful trials with distinct flags (a
  configuration measured twice in the search is confirmed once).
- :func:`interleaved_order`: every configuration ``repeats`` times, in rounds; each
  round runs every configuration once in a fresh random order (seeded), so a slow
  drift of the machine (thermals, a neighbour's load) hits all configurations alike
  instead of the ones that happen to run last.

    >>> interleaved_order(["a", "b", "c"], 2, seed=1)
    [('b', 0), ('a', 0), ('c', 0), ('b', 1), ('c', 1), ('a', 1)]
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")


def top_distinct(
    trials: Sequence[T],
    k: int,
    value: Callable[[T], float],
    flags: Callable[[T], Hashable],
    maximize: bool,
    exclude: Hashable | None = None,
) -> list[T]:
    """The ``k`` best trials by ``value`` whose ``flags`` differ (and differ from ``exclude``).

    Ties keep the earlier trial first (a stable sort).
    """
    ranked = sorted(trials, key=lambda t: -value(t) if maximize else value(t))
    out: list[T] = []
    seen = {exclude} if exclude is not None else set()
    for t in ranked:
        key = flags(t)
        if key in seen:
            continue
        seen.add(key)
        out.append(t)
        if len(out) == k:
            break
    return out


def interleaved_order(keys: Sequence[str], repeats: int, seed: int) -> list[tuple[str, int]]:
    """(configuration, repeat) pairs: ``repeats`` rounds, each a seeded shuffle of ``keys``."""
    rng = random.Random(f"autotune-confirm-{seed}")
    order: list[tuple[str, int]] = []
    for r in range(repeats):
        round_keys = list(keys)
        rng.shuffle(round_keys)
        order.extend((k, r) for k in round_keys)
    return order
