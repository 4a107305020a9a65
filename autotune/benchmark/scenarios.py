"""genai-bench traffic scenarios: validate, normalise, sample, name.

genai-bench 0.0.5 accepts these text-to-text scenario strings (its regexes, in
``genai_bench/scenarios/text.py``)::

    D(in,out)                       deterministic: every request has exactly these lengths
    N(mean_in,std_in)/(mean_out,std_out)   normal, truncated to int, in >= 1, out >= 2
    U(min_in,max_in)/(min_out,max_out)     uniform in [min, max), in >= 1, out >= 2
    U(max_in,max_out)               uniform with both minimums 1

We check a string before anything is launched, so a typo fails in config
validation and not minutes later as genai-bench's exit 2. Whitespace is
**normalised away** (``"D(10, 10)"`` becomes ``"D(10,10)"``): genai-bench itself
rejects spaces, but YAML lists invite them, and the normalised string is the one
we pass on and the one genai-bench writes back into its result files. Spaces
inside a number (``D(1 0,10)``) are an error, not glued together.

Beyond genai-bench's regexes we also reject strings that pass its check but break
a run later: a ``D`` output length below 2 (genai-bench has no TPOT for one
token, drops every such request as invalid and writes no result for the run), a ``D`` input length of 0 (genai-bench silently
sends a random dataset line instead), and a ``U`` minimum above its maximum.

    >>> parse_scenario("N(480, 240)/(300,150)").text
    'N(480,240)/(300,150)'
    >>> slug("D(100,100)")
    'D_100_100'
    >>> draw = sample_lengths("D(100,10)")
    >>> draw(random.Random(0))
    (100, 10)
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Scenario",
    "VALID_FORMS",
    "normalize_scenario",
    "parse_scenario",
    "sample_lengths",
    "slug",
]

VALID_FORMS = (
    "D(in,out) e.g. D(100,100); "
    "N(mean_in,std_in)/(mean_out,std_out) e.g. N(480,240)/(300,150); "
    "U(min_in,max_in)/(min_out,max_out) e.g. U(50,100)/(200,250); "
    "U(max_in,max_out) e.g. U(100,200)"
)

# genai-bench's validation_pattern for each type, plus optional whitespace
# between tokens (never inside a number); the canonical text is rebuilt from the ints.
_N = r"\s*(\d+)\s*"
_PAIR = rf"\(\s*{_N},{_N}\)"
_PATTERNS: dict[str, re.Pattern[str]] = {
    "D": re.compile(rf"D\s*{_PAIR}", re.ASCII),
    "N": re.compile(rf"N\s*{_PAIR}\s*/\s*{_PAIR}", re.ASCII),
    "U": re.compile(rf"U\s*{_PAIR}(?:\s*/\s*{_PAIR})?", re.ASCII),
}

# genai-bench clamps sampled lengths to these minimums (scenarios/text.py).
_MIN_IN = 1
_MIN_OUT = 2

Kind = Literal["D", "N", "U"]


@dataclass(frozen=True)
class Scenario:
    """A validated text-to-text scenario.

    ``text`` is the canonical string (no spaces), ``params`` the integers in order
    of appearance; a two-number ``U(max_in,max_out)`` is stored as written.
    """

    kind: Kind
    params: tuple[int, ...]
    text: str

    @property
    def input_range(self) -> tuple[int, int]:
        """Smallest and largest input length this scenario can draw (N: mean ± 3σ)."""
        p = self.params
        if self.kind == "D":
            return p[0], p[0]
        if self.kind == "N":
            return max(_MIN_IN, p[0] - 3 * p[1]), p[0] + 3 * p[1]
        if len(p) == 2:
            return _MIN_IN, max(_MIN_IN, p[0])
        return max(_MIN_IN, p[0] or 1), max(_MIN_IN, p[1])

    @property
    def output_range(self) -> tuple[int, int]:
        """Smallest and largest output length this scenario can draw (N: mean ± 3σ)."""
        p = self.params
        if self.kind == "D":
            return p[1], p[1]
        if self.kind == "N":
            return max(_MIN_OUT, p[2] - 3 * p[3]), max(_MIN_OUT, p[2] + 3 * p[3])
        if len(p) == 2:
            return _MIN_OUT, max(_MIN_OUT, p[1])
        return max(_MIN_OUT, p[2] or 1), max(_MIN_OUT, p[3])


def _error(scenario: object, why: str) -> ValueError:
    return ValueError(
        f"invalid genai-bench scenario {scenario!r}: {why}. Valid forms: {VALID_FORMS}"
    )


def parse_scenario(scenario: str) -> Scenario:
    """Validate a scenario string and return it parsed (whitespace removed).

    Raises ``ValueError`` naming the string and listing the valid forms.

        >>> parse_scenario("U(100,200)")
        Scenario(kind='U', params=(100, 200), text='U(100,200)')
    """
    if not isinstance(scenario, str):
        raise _error(scenario, "not a string")
    text = scenario.strip()
    kind = text[:1]
    pattern = _PATTERNS.get(kind)
    if pattern is None:
        raise _error(
            scenario,
            "unknown type (text-to-text supports D, N and U; "
            "'dataset', E, R, I and A are for other tasks or dataset mode)",
        )
    match = pattern.fullmatch(text)
    if match is None:
        raise _error(scenario, f"does not match the {kind}(...) form")
    params = tuple(int(g) for g in match.groups() if g is not None)
    _check_values(scenario, kind, params)
    pairs = "/".join(f"({a},{b})" for a, b in zip(params[::2], params[1::2], strict=True))
    return Scenario(kind=kind, params=params, text=kind + pairs)  # type: ignore[arg-type]


def _check_values(scenario: str, kind: str, p: tuple[int, ...]) -> None:
    if kind == "D":
        if p[0] < _MIN_IN:
            raise _error(scenario, "input length must be >= 1")
        if p[1] < _MIN_OUT:
            raise _error(
                scenario,
                "output length must be >= 2 (genai-bench drops every request with "
                "one output token as invalid, so the run leaves no result)",
            )
    elif kind == "U":
        lo_in, hi_in, lo_out, hi_out = (1, p[0], 1, p[1]) if len(p) == 2 else p
        if lo_in > hi_in or lo_out > hi_out:
            raise _error(scenario, "a minimum is larger than its maximum")
    # N needs no check: genai-bench clamps its draws to input >= 1, output >= 2.


def normalize_scenario(scenario: str) -> str:
    """Validate and return the canonical string genai-bench accepts.

    >>> normalize_scenario(" D(10, 10) ")
    'D(10,10)'
    """
    return parse_scenario(scenario).text


def slug(scenario: str) -> str:
    """A metric-key-safe name: runs of other characters become one ``_``.

    MLflow metric keys allow only alphanumerics and ``_ - . / space``. Any string
    is accepted (result files may hold scenarios we would not write ourselves).

    >>> slug("N(480,240)/(300,150)"), slug("D(100, 100)")
    ('N_480_240_300_150', 'D_100_100')
    """
    return re.sub(r"[^A-Za-z0-9]+", "_", scenario).strip("_")


def sample_lengths(scenario: str) -> Callable[[random.Random], tuple[int, int]]:
    """Return ``draw(rng) -> (input_len, output_len)`` distributed as genai-bench draws them.

    genai-bench uses numpy's global generator; we mirror the distribution and the
    clamping (``int()`` truncation, input >= 1, output >= 2, U's ``min or 1``), not
    the exact random stream, so replays are reproducible from the given ``rng``.

    Note: genai-bench cuts the prompt to the drawn input length with the model
    tokenizer but records the server-reported ``prompt_tokens`` (chat template
    included) as ``num_input_tokens``: D(64,32) against a server that adds 5
    template tokens shows 69 input tokens per request.
    """
    sc = parse_scenario(scenario)
    p = sc.params
    if sc.kind == "D":
        fixed = (p[0], p[1])
        return lambda rng: fixed
    if sc.kind == "N":
        mi, si, mo, so = p

        def draw_normal(rng: random.Random) -> tuple[int, int]:
            return (
                max(_MIN_IN, int(rng.gauss(mi, si))),
                max(_MIN_OUT, int(rng.gauss(mo, so))),
            )

        return draw_normal
    if len(p) == 2:
        lo_in, hi_in, lo_out, hi_out = 1, p[0], 1, p[1]
    else:
        lo_in, hi_in, lo_out, hi_out = p[0] or 1, p[1], p[2] or 1, p[3]

    def draw_uniform(rng: random.Random) -> tuple[int, int]:
        return (
            max(_MIN_IN, int(rng.uniform(lo_in, hi_in))),
            max(_MIN_OUT, int(rng.uniform(lo_out, hi_out))),
        )

    return draw_uniform
