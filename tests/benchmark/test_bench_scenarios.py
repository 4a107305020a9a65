"""Scenario strings: validation, normalisation, sampling, slugs."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from autotune.benchmark.scenarios import (
    VALID_FORMS,
    normalize_scenario,
    parse_scenario,
    sample_lengths,
    slug,
)

GOOD = {
    "D(100,100)": ("D", (100, 100)),
    "N(480,240)/(300,150)": ("N", (480, 240, 300, 150)),
    "U(50,100)/(200,250)": ("U", (50, 100, 200, 250)),
    "U(100,200)": ("U", (100, 200)),
    "D(1,2)": ("D", (1, 2)),
    "N(10,0)/(1,0)": ("N", (10, 0, 1, 0)),  # genai-bench clamps output to >= 2
}
BAD = [
    "",
    "D",
    "D(10,10",
    "D(10)",
    "D(10,10,10)",
    "d(10,10)",
    "X(1,2)",
    "E(64)",
    "I(512,512)",
    "dataset",
    "D(1.5,2)",
    "D(-1,2)",
    "D(0,10)",  # genai-bench would send a random dataset line
    "D(10,1)",  # genai-bench has no TPOT for one token and aborts
    "N(1,2)",
    "N(1,2)/(3)",
    "U(1,2)/(3)",
    "U(10,5)/(1,2)",
    "U(1,2)/(9,3)",
    "D(10,10)x",
    "D(1 0,10)",  # a space inside a number is not glued away
    "D(１０,10)",  # full-width digits pass \d but not ours
]


@pytest.mark.parametrize("text", sorted(GOOD))
def test_good_scenarios_parse(text):
    sc = parse_scenario(text)
    assert (sc.kind, sc.params) == GOOD[text]
    assert sc.text == text


def test_spaces_are_normalised_away():
    # genai-bench itself exits 2 on "D(10, 10)"; we pass on the canonical form.
    assert normalize_scenario(" D(10, 10) ") == "D(10,10)"
    assert normalize_scenario("N( 480 ,240) / (300,150)") == "N(480,240)/(300,150)"
    assert normalize_scenario("U(0100,200)") == "U(100,200)"


@pytest.mark.parametrize("text", BAD)
def test_bad_scenarios_name_the_string_and_the_valid_forms(text):
    with pytest.raises(ValueError) as err:
        parse_scenario(text)
    assert repr(text) in str(err.value)
    assert VALID_FORMS in str(err.value)


def test_non_string_is_rejected():
    with pytest.raises(ValueError, match="not a string"):
        parse_scenario(100)  # type: ignore[arg-type]


def test_accepted_strings_are_accepted_by_genai_bench_too():
    # genai-bench must be imported in a child process (it gevent-patches).
    code = (
        "import json, sys\n"
        "from genai_bench.scenarios.base import Scenario\n"
        "import genai_bench.scenarios.text\n"
        "out = {}\n"
        "for s in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        Scenario.validate(s); out[s] = True\n"
        "    except Exception:\n"
        "        out[s] = False\n"
        "print(json.dumps(out))\n"
    )
    strings = sorted(GOOD) + ["D(10,10)", "D(10, 10)"]
    res = subprocess.run(
        [sys.executable, "-c", code, json.dumps(strings)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    verdict = json.loads(res.stdout.strip().splitlines()[-1])
    assert all(verdict[s] for s in GOOD)
    assert verdict["D(10, 10)"] is False  # why we normalise ...
    assert verdict[normalize_scenario("D(10, 10)")] is True  # ... to what it accepts


def test_input_and_output_ranges():
    assert parse_scenario("D(100,10)").input_range == (100, 100)
    assert parse_scenario("U(100,200)").input_range == (1, 100)
    assert parse_scenario("U(100,200)").output_range == (2, 200)
    assert parse_scenario("U(50,100)/(200,250)").output_range == (200, 250)
    assert parse_scenario("N(100,10)/(50,5)").input_range == (70, 130)


def test_sample_deterministic():
    draw = sample_lengths("D(100,10)")
    rng = random.Random(1)
    assert {draw(rng) for _ in range(50)} == {(100, 10)}


def test_sample_normal_matches_genai_bench_clamping():
    draw = sample_lengths("N(480,240)/(300,150)")
    rng = random.Random(7)
    pairs = [draw(rng) for _ in range(20000)]
    ins, outs = zip(*pairs, strict=True)
    assert min(ins) >= 1 and min(outs) >= 2
    assert all(isinstance(v, int) for v in ins + outs)
    # Truncated at 1 (about 2.3 % mass below 0), so the mean rises slightly above 480.
    assert 475 < sum(ins) / len(ins) < 500
    assert 295 < sum(outs) / len(outs) < 315
    # Reproducible from the rng.
    assert [draw(random.Random(3)) for _ in range(3)] == [draw(random.Random(3)) for _ in range(3)]


def test_sample_uniform_ranges():
    rng = random.Random(0)
    draw = sample_lengths("U(50,100)/(200,250)")
    pairs = [draw(rng) for _ in range(5000)]
    assert all(50 <= i < 100 and 200 <= o < 250 for i, o in pairs)
    draw = sample_lengths("U(10,3)")  # single form: minimums are 1; output clamped to 2
    pairs = [draw(rng) for _ in range(5000)]
    assert all(1 <= i < 10 and 2 <= o < 3 for i, o in pairs)
    assert {i for i, _ in pairs} == set(range(1, 10))


def test_slug():
    assert slug("D(100,100)") == "D_100_100"
    assert slug("N(480,240)/(300,150)") == "N_480_240_300_150"
    assert slug("U(100,200)") == "U_100_200"
    assert slug("dataset") == "dataset"
