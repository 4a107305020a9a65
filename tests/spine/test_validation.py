"""Bad input is caught before anything is deployed, with the key and the fix named."""

import pytest
from omegaconf import OmegaConf

from autotune.study.service import expected_trials
from autotune.study.validation import sweep_values, validate_study


def errors_for(compose_cfg, *overrides):
    return "\n".join(validate_study(compose_cfg(*overrides)))


def test_default_study_is_valid(compose_cfg):
    assert validate_study(compose_cfg()) == []


def test_unknown_flag_is_named_with_a_suggestion(compose_cfg):
    err = errors_for(compose_cfg, "params.mem-fraction-statik=0.8")
    assert "params.mem-fraction-statik" in err and "mem-fraction-static" in err


def test_every_sweep_value_is_checked(compose_cfg):
    cfg = compose_cfg("params.schedule-policy=fcfs")
    cfg.hydra.overrides.task.append("params.schedule-policy=fcfs,lpm,lmp")
    assert "'lmp': not one of" in "\n".join(validate_study(cfg))


def test_search_space_in_sweeper_params_is_checked(compose_cfg):
    cfg = compose_cfg()
    OmegaConf.update(
        cfg, "hydra.sweeper.params", {"params.chunk": "interval(512, 1.5)"}, force_add=True
    )
    assert "params.chunk=1.5: expected a int" in "\n".join(validate_study(cfg))


@pytest.mark.parametrize(
    "override, needle",
    [
        ('benchmark.scenarios=["D(10)"]', "benchmark.scenarios"),
        ("benchmark.concurrency=[0]", "benchmark.concurrency: 0"),
        ("benchmark.concurrency=[]", "benchmark.concurrency is empty"),
        ("objective.terms=[{metric: ttft_p99,direction: minimize}]", "Did you mean: ttft_p99_ms"),
        ("+objective.slo.ttft_p999_ms=500", "objective.slo.ttft_p999_ms"),
        ("objective.concurrency=64", "objective.concurrency=64 is not a benchmark level"),
        ("runtime=vllm", "deploy=sim simulates SGLang only"),
        ("deploy.gpu=a100", "no profile"),
        ("deploy=local", "model.tokenizer"),
        ("+runtime.flags.foo={tpye: int}", "runtime.flags.foo: unknown key(s) ['tpye']"),
        ("export.pick=best", "export.pick='best': use max:<metric>"),
        ("export.pick=max:ttft", "export.pick: unknown metric 'ttft'"),
        ("+runtime.aliases.x=nope", "runtime.aliases.x: 'nope' is not in runtime.flags"),
    ],
)
def test_bad_input_is_reported(compose_cfg, override, needle):
    assert needle in errors_for(compose_cfg, override)


def test_sweep_values_reads_cli_and_search_space(compose_cfg):
    cfg = compose_cfg()
    cfg.hydra.overrides.task.append("params.tp=1,2")
    found = {k: v for k, v, _ in sweep_values(cfg)}
    assert found["params.tp"] == [1, 2]
    assert found["params.mem"] == [0.7, 0.8, 0.88]


def test_expected_trials_counts_the_grid(compose_cfg):
    cfg = compose_cfg()
    assert expected_trials(cfg) == 3
    cfg.hydra.overrides.task.append("params.mem=0.7,0.8")  # replaces the default list
    assert expected_trials(cfg) == 2
    cfg.hydra.overrides.task.append("params.chunk=2048,4096")
    assert expected_trials(cfg) == 4


def test_structured_config_rejects_typos_at_composition(compose_cfg):
    with pytest.raises(Exception, match="concurency"):
        compose_cfg("benchmark.concurency=[8]")
    with pytest.raises(Exception, match="max_requests_per_run"):
        compose_cfg("benchmark.max_requests_per_run=lots")


def test_a_flag_swept_under_two_names_is_refused(compose_cfg):
    """The default grid sweeps params.mem; a list for the native name would set it twice."""
    cfg = compose_cfg()
    assert validate_study(cfg) == []
    cfg.hydra.overrides.task.append("params.mem-fraction-static=0.7,0.8")
    errors = validate_study(cfg)
    assert any("both set mem-fraction-static" in e for e in errors), errors
