"""deploy=docker: the rendered container spec, and the lifecycle on a REAL Docker engine.

Tests marked ``docker`` run containers on the daemon of ``conftest.docker_client``
(started for the session if none answers). The engine in those containers is the
simulated SGLang server (deploy=docker_sim) in the local "hostshim" image; all
traffic goes to 127.0.0.1 (host network, no bridge).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from autotune.launchers.docker import (
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_TRIAL,
    DockerLauncher,
    reap_containers,
)
from autotune_docker_sim import SimDockerLauncher  # tests/plugins/docker_sim

from autotune.deploy import Failure, LaunchSpec, TrialFailure
from autotune.deploy.readiness import wait_ready
from autotune.params import normalize

ROOT = Path(__file__).resolve().parents[2]
SIM_TOKENIZER = ROOT / "autotune" / "sim" / "tokenizer"
READY = "The server is fired up and ready to roll!"


@pytest.fixture
def make_spec(compose_cfg, tmp_path):
    counter = iter(range(1000))

    def _make(*overrides: str, deploy: str = "docker", gpus=None) -> tuple[LaunchSpec, object]:
        cfg = compose_cfg(f"deploy={deploy}", *overrides)
        spec = LaunchSpec(
            trial_name=f"test-{os.getpid()}-{time.time_ns() % 10**8}-trial-{next(counter):03d}",
            runtime=cfg.runtime,
            model=cfg.model,
            params=normalize(dict(cfg.params), cfg.runtime.flags, cfg.runtime.aliases),
            workdir=tmp_path / f"trial-{next(counter)}",
            gpus=gpus,
        )
        return spec, cfg

    return _make


def _render(launcher, spec) -> tuple[dict, str]:
    out = launcher.render(spec)
    return json.loads(out["container.json"]), out["docker_run.sh"]


# -- rendering (no daemon) ------------------------------------------------------------------
def test_image_and_tag_come_from_the_runtime_and_the_tag_is_overridable(make_spec):
    spec, _ = make_spec()
    assert _render(DockerLauncher(), spec)[0]["image"] == "lmsysorg/sglang:v0.5.5.post3-cu129-amd64"
    spec, _ = make_spec("runtime.image_tag=v0.5.6-cu129-amd64")
    kwargs, script = _render(DockerLauncher(), spec)
    assert kwargs["image"] == "lmsysorg/sglang:v0.5.6-cu129-amd64"
    assert "  lmsysorg/sglang:v0.5.6-cu129-amd64 \\\n" in script
    assert _render(DockerLauncher(image="my/sglang:dev"), spec)[0]["image"] == "my/sglang:dev"


def test_host_network_binds_loopback_and_gpus_are_a_device_request(make_spec):
    spec, _ = make_spec("params.tp-size=2", "params.mem=0.8", gpus=[2, 3])
    kwargs, script = _render(DockerLauncher(), spec)
    cmd = kwargs["command"]
    assert cmd[:3] == ["python3", "-m", "sglang.launch_server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--tp-size") + 1] == "2"
    assert cmd[cmd.index("--mem-fraction-static") + 1] == "0.8"
    assert kwargs["network_mode"] == "host" and "ports" not in kwargs
    assert kwargs["init"] is True and kwargs["ipc_mode"] == "host"
    assert kwargs["device_requests"] == [
        {"driver": "nvidia", "capabilities": [["gpu"]], "device_ids": ["2", "3"]}
    ]
    assert kwargs["labels"][LABEL_TRIAL] == spec.trial_name
    assert "--gpus '\"device=2,3\"'" in script
    assert "--init" in script and "--network host" in script and "--ipc host" in script


def test_bridge_binds_all_interfaces_and_publishes_on_loopback(make_spec):
    spec, _ = make_spec("params.tp-size=4")
    kwargs, script = _render(
        DockerLauncher(network_mode="bridge", ipc_mode=None, shm_size="16g"), spec
    )
    cmd = kwargs["command"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--port") + 1] == "30000"
    assert kwargs["ports"] == {"30000/tcp": ["127.0.0.1", 30000]}
    assert kwargs["shm_size"] == "16g"
    assert kwargs["device_requests"][0]["count"] == 4  # no deploy.gpus: any 4
    assert "--publish 127.0.0.1:30000:30000" in script and "--shm-size 16g" in script


def test_secrets_and_proxies_are_passed_but_never_rendered(make_spec, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("HF_TOKEN=hf_from_dotenv_123456\nSGLANG_FLAG=on\n")
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pr0xy-pass@proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost")
    spec, _ = make_spec()
    launcher = DockerLauncher(env={"MY_API_KEY": "sk-abcdef123456"})
    env = launcher.environment(spec)
    assert env["HF_TOKEN"] == "hf_from_dotenv_123456"  # the container gets the real value
    assert env["HTTPS_PROXY"].startswith("http://user:pr0xy-pass@")
    assert env["SGLANG_FLAG"] == "on" and env["NO_PROXY"] == "localhost"
    rendered = "".join(launcher.render(spec).values())
    for secret in ("hf_from_dotenv_123456", "pr0xy-pass", "sk-abcdef123456"):
        assert secret not in rendered
    kwargs, script = _render(launcher, spec)
    assert kwargs["environment"]["HF_TOKEN"] == "***"
    assert "--env HF_TOKEN \\" in script and "--env SGLANG_FLAG=on \\" in script


def test_no_gpus_when_disabled_and_volumes_with_modes(make_spec, tmp_path):
    spec, _ = make_spec()
    launcher = DockerLauncher(
        use_gpus=False, volumes={str(tmp_path): "/root/.cache/huggingface", "/models": "/models:ro"}
    )
    kwargs, script = _render(launcher, spec)
    assert "device_requests" not in kwargs and "--gpus" not in script
    assert kwargs["volumes"][str(tmp_path)] == {"bind": "/root/.cache/huggingface", "mode": "rw"}
    assert kwargs["volumes"]["/models"] == {"bind": "/models", "mode": "ro"}
    assert "--volume /models:/models:ro" in script


def test_docker_sim_runs_the_simulators_argv(make_spec):
    spec, _ = make_spec("params.mem=0.8", deploy="docker_sim")
    kwargs, script = _render(SimDockerLauncher(faults=["fail-start=oom"]), spec)
    cmd = kwargs["command"]
    assert cmd[0] == sys.executable and cmd[1:3] == ["-m", "autotune.sim.server"]
    assert cmd[cmd.index("--tokenizer-path") + 1] == str(SIM_TOKENIZER)
    assert cmd[cmd.index("--sim-model") + 1] == "llama-3.1-8b"
    assert cmd[cmd.index("--sim-fault") + 1] == "fail-start=oom"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert kwargs["image"] == "local/hostshim:latest" and "device_requests" not in kwargs
    mounts = kwargs["volumes"]
    assert mounts["/usr"] == {"bind": "/usr", "mode": "ro"}
    assert mounts[str(ROOT)] == {"bind": str(ROOT), "mode": "ro"}
    assert all(m["mode"] == "ro" for m in mounts.values())
    assert SimDockerLauncher.simulated and not DockerLauncher.simulated


@pytest.mark.parametrize("deploy", ["docker", "docker_sim"])
def test_dry_run_cli_prints_the_spec_and_contacts_no_daemon(tmp_path, deploy):
    """Done-when 2: `python -m autotune deploy=docker dry_run=true` with no Docker at all."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no.sock", "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "autotune", f"deploy={deploy}", "dry_run=true", "params.mem=0.8"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "docker run \\" in proc.stdout and '"command": [' in proc.stdout
    (written,) = list(tmp_path.glob("multirun/*/*/0/launch/container.json"))
    kwargs = json.loads(written.read_text())
    assert kwargs["command"][kwargs["command"].index("--mem-fraction-static") + 1] == "0.8"
    assert (written.parent / "docker_run.sh").exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_start_without_a_daemon_is_a_deploy_error(make_spec, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    spec, _ = make_spec()
    with pytest.raises(TrialFailure) as err:
        DockerLauncher().start(spec)
    assert err.value.failure == Failure.DEPLOY_ERROR and "dockerd" in str(err.value)


# -- a real Docker engine ----------------------------------------------------------------
def _by_label(client, trial_name: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{LABEL_TRIAL}={trial_name}"})


def _wait_ready(launcher, ep, cfg, timeout_s=60.0) -> float:
    return wait_ready(
        launcher, ep,
        health_path=cfg.runtime.health_path,
        ready_pattern=cfg.runtime.ready_log_pattern,
        failure_patterns=cfg.runtime.failure_patterns,
        timeout_s=timeout_s,
    )  # fmt: skip


@pytest.mark.docker
@pytest.mark.slow
def test_sim_container_serves_a_chat_completion_and_leaves_nothing(
    docker_client, hostshim, make_spec
):
    spec, cfg = make_spec("params.mem=0.8", deploy="docker_sim")
    launcher = SimDockerLauncher(startup_s=0.5)
    ep = launcher.start(spec)
    try:
        assert ep.base_url.startswith("http://127.0.0.1:")
        assert _by_label(docker_client, spec.trial_name)
        state_dir = Path(os.environ["AUTOTUNE_STATE_DIR"])
        assert list(state_dir.rglob("container-*.json")), "recorded in the registry"
        assert _wait_ready(launcher, ep, cfg) < 60
        assert launcher.poll(ep) is None
        r = httpx.post(
            ep.base_url + "/v1/chat/completions",
            json={"model": ep.model_name, "messages": [{"role": "user", "content": "hi"}],
                  "max_tokens": 8},
            timeout=30,
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == 8
    finally:
        t0 = time.monotonic()
        launcher.stop(ep)
        stop_s = time.monotonic() - t0
    assert stop_s < 8, "init=True forwards SIGTERM: no 10 s kill timeout"
    log_text = ep.log_path.read_text()
    assert READY in log_text
    assert "Shutting down" in log_text, "the log was saved through the end, before removal"
    assert _by_label(docker_client, spec.trial_name) == []
    assert not list(Path(os.environ["AUTOTUNE_STATE_DIR"]).rglob("container-*.json"))
    launcher.stop(ep)  # idempotent


@pytest.mark.docker
@pytest.mark.parametrize(
    "overrides,faults,expected,line,code",
    [
        ([], ["fail-start=oom"], Failure.OOM, "CUDA out of memory", 1),
        (["params.mem=0.05"], [], Failure.OOM, "Not enough memory", 1),
        ([], ["fail-start=bad-flag"], Failure.BAD_FLAG, "error: ambiguous option", 2),
    ],
)
def test_engine_failing_at_start_gives_exit_code_and_log(
    docker_client, hostshim, make_spec, overrides, faults, expected, line, code
):
    spec, cfg = make_spec(*overrides, deploy="docker_sim")
    launcher = SimDockerLauncher(faults=faults, startup_s=0.2)
    ep = launcher.start(spec)
    try:
        with pytest.raises(TrialFailure) as err:
            _wait_ready(launcher, ep, cfg)
        assert err.value.failure == expected
        assert launcher.poll(ep) == code
        assert line in ep.log_path.read_text()
        assert line in str(err.value)
    finally:
        launcher.stop(ep)
    assert _by_label(docker_client, spec.trial_name) == []


@pytest.mark.docker
def test_missing_image_is_a_deploy_error_and_nothing_is_created(docker_client, make_spec):
    spec, _ = make_spec(deploy="docker_sim")
    launcher = SimDockerLauncher(image="local/autotune-no-such-image:1")
    with pytest.raises(TrialFailure) as err:
        launcher.start(spec)
    assert err.value.failure == Failure.DEPLOY_ERROR and "docker pull" in str(err.value)
    assert _by_label(docker_client, spec.trial_name) == []


@pytest.mark.docker
def test_gpu_request_without_the_nvidia_runtime_is_a_deploy_error(
    docker_client, hostshim, make_spec
):
    spec, _ = make_spec(deploy="docker_sim", gpus=[0])
    launcher = SimDockerLauncher(use_gpus=True)
    try:
        ep = launcher.start(spec)
    except TrialFailure as err:  # this machine: no NVIDIA container toolkit
        assert err.failure == Failure.DEPLOY_ERROR and "nvidia" in str(err).lower()
    else:  # a GPU host with the toolkit: the request was accepted
        launcher.stop(ep)
    assert _by_label(docker_client, spec.trial_name) == []


@pytest.mark.docker
def test_leftovers_of_a_dead_tuner_are_reaped(docker_client, hostshim, make_spec):
    dead_owner = f"{2**22 + 4321}@{os.uname().nodename}"
    spec, _ = make_spec(deploy="docker_sim")
    name = f"autotune-leftover-{os.getpid()}"
    docker_client.containers.create(
        hostshim, ["/usr/bin/sleep", "60"], name=name,
        labels={LABEL_MANAGED: "true", LABEL_OWNER: dead_owner, LABEL_TRIAL: spec.trial_name},
        volumes={"/usr": {"bind": "/usr", "mode": "ro"}}, network_mode="host",
    ).start()  # fmt: skip
    live = docker_client.containers.create(
        hostshim, ["/usr/bin/sleep", "60"], name=f"{name}-live", init=True,
        labels={LABEL_MANAGED: "true", LABEL_OWNER: f"{os.getpid()}@{os.uname().nodename}"},
        volumes={"/usr": {"bind": "/usr", "mode": "ro"}}, network_mode="host",
    )  # fmt: skip
    try:
        removed = reap_containers(docker_client)
        assert _by_label(docker_client, spec.trial_name) == []
        assert live.id not in removed
        docker_client.containers.get(live.id)  # still there
    finally:
        live.remove(force=True)


@pytest.mark.docker
def test_a_leftover_with_the_same_name_is_replaced(docker_client, hostshim, make_spec):
    spec, cfg = make_spec(deploy="docker_sim")
    launcher = SimDockerLauncher(startup_s=0.2)
    kwargs = launcher.container_spec(spec, 1)
    docker_client.containers.create(
        hostshim, ["/usr/bin/true"], name=kwargs["name"],
        labels={LABEL_MANAGED: "true", LABEL_OWNER: f"{2**22 + 99}@{os.uname().nodename}"},
    )  # fmt: skip
    ep = launcher.start(spec)
    try:
        _wait_ready(launcher, ep, cfg)
    finally:
        launcher.stop(ep)
    assert _by_label(docker_client, spec.trial_name) == []


@pytest.mark.docker
@pytest.mark.slow
def test_two_trial_sweep_on_docker_gets_metrics(docker_client, hostshim, tmp_path):
    """`python -m autotune deploy=docker_sim ...`: the whole pipeline, engines in containers."""
    import mlflow

    env = {**os.environ, "AUTOTUNE_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run(
        [sys.executable, "-m", "autotune", "deploy=docker_sim", "params.mem=0.8,0.85",
         f"model.tokenizer={SIM_TOKENIZER}", "benchmark.concurrency=[2]",
         "benchmark.max_requests_per_run=4", 'benchmark.scenarios=["D(256,64)"]',
         "search.confirm.enabled=false", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    df = mlflow.search_runs(search_all_experiments=True)
    trials = df[df["tags.autotune.role"] == "trial"]
    assert len(trials) == 2
    assert (trials["tags.autotune.status"] == "ok").all()
    assert (trials["tags.autotune.deploy"] == "docker_sim").all()
    assert (trials["tags.autotune.simulated"] == "true").all()
    assert (trials["metrics.output_throughput_tok_s"] > 0).all()
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=true"}) == []
