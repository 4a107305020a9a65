import pytest

from autotune.config import FlagSpec
from autotune.params import ParamError, canonical_name, normalize, suggest, to_argv

FLAGS = {
    "mem-fraction-static": FlagSpec(type="float", min=0.05, max=0.99),
    "chunked-prefill-size": FlagSpec(type="int", min=-1),
    "schedule-policy": FlagSpec(type="str", choices=["fcfs", "lpm"]),
    "enable-mixed-chunk": FlagSpec(type="bool"),
    "tp-size": FlagSpec(type="int", min=1),
}
ALIASES = {"mem": "mem-fraction-static", "tp": "tp-size"}


def test_alias_maps_to_native_name_and_value_is_typed():
    assert normalize({"mem": "0.8", "tp": 2}, FLAGS, ALIASES) == {
        "mem-fraction-static": 0.8,
        "tp-size": 2,
    }


def test_none_means_engine_default_and_is_dropped():
    assert normalize({"mem": None, "schedule-policy": "lpm"}, FLAGS, ALIASES) == {
        "schedule-policy": "lpm"
    }


def test_unknown_flag_names_key_and_suggests_close_matches():
    with pytest.raises(ParamError) as e:
        normalize({"mem-fraction-statc": 0.8}, FLAGS, ALIASES)
    assert "params.mem-fraction-statc" in str(e.value)
    assert "mem-fraction-static" in str(e.value)


def test_underscore_and_dash_prefixed_spellings_are_accepted():
    assert canonical_name("--chunked_prefill_size", FLAGS, ALIASES) == "chunked-prefill-size"


def test_same_flag_twice_via_alias_is_an_error():
    with pytest.raises(ParamError, match="both set mem-fraction-static"):
        normalize({"mem": 0.7, "mem-fraction-static": 0.8}, FLAGS, ALIASES)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"mem": 1.5}, "must be <= 0.99"),
        ({"mem": "lots"}, "expected a float"),
        ({"tp": 1.5}, "expected a int"),
        ({"tp": 0}, "must be >= 1"),
        ({"schedule-policy": "lmp"}, "Did you mean: lpm"),
        ({"enable-mixed-chunk": "maybe"}, "expected a bool"),
    ],
)
def test_bad_values_are_rejected_with_the_reason(params, message):
    with pytest.raises(ParamError, match=message):
        normalize(params, FLAGS, ALIASES)


def test_argv_items_booleans_are_switches_and_nothing_goes_through_a_shell():
    argv = to_argv(
        {
            "mem-fraction-static": 0.8,
            "enable-mixed-chunk": True,
            "schedule-policy": "lpm; rm -rf /",
        },
        FLAGS,
    )
    assert argv == [
        "--mem-fraction-static",
        "0.8",
        "--enable-mixed-chunk",
        "--schedule-policy",
        "lpm; rm -rf /",
    ]
    assert to_argv({"enable-mixed-chunk": False}, FLAGS) == []


def test_suggest_finds_substrings():
    assert "chunked-prefill-size" in suggest("prefill", FLAGS)
