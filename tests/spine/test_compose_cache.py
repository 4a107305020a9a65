"""The sweepers' compose cache gives exactly what Hydra's full composition gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from autotune.config import register_configs
from hydra_plugins.autotune_sweepers.compose_cache import ComposeCache

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture(scope="module")
def hydra_loader():
    register_configs()
    with initialize_config_dir(config_dir=str(CONF)):
        loader = GlobalHydra.instance().config_loader()
        master = compose(config_name="config", return_hydra_config=True)
        yield loader, master


@pytest.mark.parametrize(
    "overrides",
    [
        ["params.mem=0.8"],
        ["deploy=sim", "deploy.clock=virtual", "params.mem=0.7", "+params.schedule-policy=lpm"],
        ["runtime=vllm", "params.mem=0.8", "benchmark.concurrency=[1,4]"],
        ["params.mem=null", "study.baseline_trial=true"],
    ],
)
def test_cached_composition_equals_hydra(hydra_loader, overrides: list[str]) -> None:
    loader, master = hydra_loader
    cache = ComposeCache(loader)
    expected = loader.load_sweep_config(master, list(overrides))
    for _ in range(2):  # the miss that fills the cache, then a hit
        got = cache.load_sweep_config(master, list(overrides))
        assert OmegaConf.to_container(got) == OmegaConf.to_container(expected)
        assert got.hydra.job.override_dirname == expected.hydra.job.override_dirname
        assert OmegaConf.is_struct(got) and not OmegaConf.is_readonly(got.hydra)


def test_one_composition_per_config_choice(hydra_loader) -> None:
    loader, master = hydra_loader
    cache = ComposeCache(loader)
    for mem in (0.7, 0.8, 0.9):
        cfg = cache.load_sweep_config(master, ["deploy.clock=virtual", f"params.mem={mem}"])
        assert cfg.params.mem == mem
    cache.load_sweep_config(master, ["runtime=vllm", "params.mem=0.5"])
    assert len(cache._composed) == 2
    # Jobs get copies: changing one never leaks into the next.
    first = cache.load_sweep_config(master, ["params.mem=0.7"])
    first.params.mem = 0.1
    assert cache.load_sweep_config(master, ["params.mem=0.7"]).params.mem == 0.7


def test_bad_value_fails_like_hydra(hydra_loader) -> None:
    loader, master = hydra_loader
    bad = ["params.mem=0.8", "deploy.startup_timeout_s=soon"]
    with pytest.raises(ConfigCompositionException) as hydra_error:
        loader.load_sweep_config(master, bad)
    with pytest.raises(ConfigCompositionException) as cached_error:
        ComposeCache(loader).load_sweep_config(master, bad)
    assert str(cached_error.value) == str(hydra_error.value)


def test_wrapped_context_keeps_the_execution_whitelist(hydra_loader) -> None:
    from hydra.types import HydraContext

    from autotune.__main__ import TRUSTED_TARGETS
    from hydra_plugins.autotune_sweepers.compose_cache import with_compose_cache

    loader, _ = hydra_loader
    context = HydraContext(
        config_loader=loader, callbacks=None, execution_whitelist=TRUSTED_TARGETS
    )
    wrapped = with_compose_cache(context)
    assert isinstance(wrapped.config_loader, ComposeCache)
    assert wrapped.execution_whitelist == TRUSTED_TARGETS
    assert with_compose_cache(wrapped) is wrapped
