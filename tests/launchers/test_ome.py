"""deploy=ome: the rendered InferenceService, and the lifecycle against a MOCKED API.

No test here talks to a cluster: the manifest is validated against OME's CRD
schema, and start/poll/stop run against ``kube_mock.MockCluster``, a scripted
stand-in for the Kubernetes API server (a cluster is a boundary this machine
cannot reach).
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from autotune.launchers.ome import OmeLauncher, isvc_name, label_value
from kube_mock import (  # tests/launchers is on sys.path (no __init__.py)
    MockCluster,
    api_error,
    event,
    pod,
    status_failed_load,
    status_progress,
    status_ready,
)

from autotune.deploy import Failure, LaunchSpec, TrialFailure
from autotune.deploy.readiness import wait_ready
from autotune.params import normalize

ROOT = Path(__file__).resolve().parents[2]
CRDS = Path(__file__).resolve().parent / "crds"
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
READY = "The server is fired up and ready to roll!"
OOM_LOG = (
    "Load weight begin. avail mem=78.5 GB\n"
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n"
)


def crd_validator(kind: str):
    pytest.importorskip(
        "jsonschema", reason="jsonschema validates manifests against the CRDs (dev extra)"
    )
    return _validator(kind)


@functools.cache
def _validator(kind: str):
    import jsonschema

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are megabytes of YAML
    with gzip.open(CRDS / f"ome.io_{kind}.yaml.gz", "rt") as f:
        crd = yaml.load(f, Loader=loader)  # noqa: S506 - a safe loader
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = version["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(schema)


def assert_valid(kind: str, manifest: dict) -> None:
    errors = sorted(crd_validator(kind).iter_errors(manifest), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.fixture
def make_spec(compose_cfg, tmp_path):
    def _make(*overrides: str, trial: str = "study-20260101-000000-trial-003") -> LaunchSpec:
        cfg = compose_cfg("deploy=ome", *overrides)
        return LaunchSpec(
            trial_name=trial,
            runtime=cfg.runtime,
            model=cfg.model,
            params=normalize(dict(cfg.params), cfg.runtime.flags, cfg.runtime.aliases),
            workdir=tmp_path / "trial",
        )

    return _make


def launcher(cluster: MockCluster | None = None, **kw) -> OmeLauncher:
    kw.setdefault("namespace", "bench")
    kw.setdefault("base_model", "llama-3-1-8b-instruct")
    kw.setdefault("serving_runtime", "srt-llama-3-1-8b-instruct")
    kw.setdefault("access", "in_cluster")
    kw.setdefault("poll_s", 0.0)
    kw.setdefault("delete_wait_s", 5.0)
    return OmeLauncher(clients=cluster.clients() if cluster else None, sleep=lambda s: None, **kw)


# -- rendering ---------------------------------------------------------------------------
def test_manifest_validates_against_the_crd_with_flags_and_gpus(make_spec):
    spec = make_spec("params.tp-size=2", "params.mem=0.8", "params.enable-mixed-chunk=true")
    m = launcher().manifest(spec)
    assert_valid("inferenceservices", m)
    assert m["apiVersion"] == "ome.io/v1beta1" and m["kind"] == "InferenceService"
    eng = m["spec"]["engine"]
    args = eng["runner"]["args"]
    assert args[args.index("--mem-fraction-static") + 1] == "0.8"
    assert args[args.index("--tp-size") + 1] == "2"
    assert "--enable-mixed-chunk" in args
    res = eng["runner"]["resources"]
    assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == 2
    assert res["requests"] == res["limits"]
    assert eng["minReplicas"] == eng["maxReplicas"] == 1
    assert eng["deploymentStrategy"] == {"type": "Recreate"}
    assert eng["runner"]["name"] == "ome-container"
    assert "command" not in eng["runner"]  # the runtime's command stays; args are appended
    assert m["spec"]["model"]["name"] == "llama-3-1-8b-instruct"
    assert m["spec"]["runtime"]["name"] == "srt-llama-3-1-8b-instruct"
    meta = m["metadata"]
    assert meta["namespace"] == "bench"
    assert DNS_1035.fullmatch(meta["name"]) and len(meta["name"]) <= 50
    assert meta["labels"]["autotune.io/study"] == "study-20260101-000000"
    assert meta["labels"]["autotune.io/trial"] == "study-20260101-000000-trial-003"
    assert meta["annotations"]["autotune.io/trial"] == spec.trial_name
    assert all(LABEL_VALUE.fullmatch(v) for v in meta["labels"].values())


def test_defaults_base_model_from_model_name_and_lets_ome_pick_the_runtime(make_spec):
    m = launcher(base_model=None, serving_runtime=None).manifest(make_spec())
    assert_valid("inferenceservices", m)
    assert m["spec"]["model"]["name"] == "llama-3-1-8b-instruct"
    assert "runtime" not in m["spec"]
    assert m["spec"]["engine"]["runner"]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_node_selector_env_and_no_secrets_in_the_manifest(make_spec, monkeypatch):
    lau = launcher(
        node_selector={"nvidia.com/gpu.product": "H100"},
        env={"SGLANG_X": "1", "HF_TOKEN": "hf_secret_123"},
    )
    text = lau.render(make_spec())["inferenceservice.yaml"]
    m = yaml.safe_load(text)
    assert_valid("inferenceservices", m)
    assert m["spec"]["engine"]["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert m["spec"]["engine"]["runner"]["env"] == [{"name": "SGLANG_X", "value": "1"}]
    assert "hf_secret_123" not in text and "HF_TOKEN" not in text


def test_awkward_values_stay_strings(make_spec):
    spec = make_spec(trial="Weird: study/\"quoted\" 'yes'-trial-001")
    m = launcher(env={"ON": "yes", "N": "0012"}).manifest(spec)
    assert_valid("inferenceservices", m)
    assert {e["name"]: e["value"] for e in m["spec"]["engine"]["runner"]["env"]} == {
        "ON": "yes",
        "N": "0012",
    }
    assert m["metadata"]["annotations"]["autotune.io/trial"] == spec.trial_name


@pytest.mark.parametrize(
    "trial", ["t", "0-starts-with-digit", "UPPER_case.dots", "x" * 300, "autotune-2026-trial-000-"]
)
def test_names_are_dns_1035_and_short(trial):
    name = isvc_name(trial)
    assert DNS_1035.fullmatch(name) and len(name) <= 50
    assert LABEL_VALUE.fullmatch(label_value(trial)) and len(label_value(trial)) <= 63


def test_long_trial_names_stay_distinct():
    a, b = isvc_name("s" * 80 + "-trial-001"), isvc_name("s" * 80 + "-trial-002")
    assert a != b


def test_render_contacts_no_cluster(make_spec, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    lau = OmeLauncher()
    assert "InferenceService" in lau.render(make_spec())["inferenceservice.yaml"]
    assert lau._clients is None


@pytest.mark.parametrize(
    "kind,path",
    [
        ("clusterbasemodels", "examples/ome/clusterbasemodel.yaml"),
        ("clusterservingruntimes", "examples/ome/clusterservingruntime.yaml"),
    ],
)
def test_examples_validate(kind, path):
    m = yaml.safe_load((ROOT / path).read_text())
    assert_valid(kind, m)


def test_dry_run_cli_prints_a_valid_isvc(tmp_path):
    """Done-when 1: measured through `python -m autotune`, with no cluster configured."""
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none"), "NO_COLOR": "1", "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "autotune", "deploy=ome", "dry_run=true", "params.tp-size=2",
         "params.mem=0.8"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kind: InferenceService" in proc.stdout
    (written,) = list(tmp_path.glob("multirun/*/*/0/launch/inferenceservice.yaml"))
    m = yaml.safe_load(written.read_text())
    assert_valid("inferenceservices", m)
    args = m["spec"]["engine"]["runner"]["args"]
    assert args[args.index("--mem-fraction-static") :][:2] == ["--mem-fraction-static", "0.8"]
    assert args[args.index("--tp-size") :][:2] == ["--tp-size", "2"]
    res = m["spec"]["engine"]["runner"]["resources"]
    assert res["requests"]["nvidia.com/gpu"] == 2 and res["limits"]["nvidia.com/gpu"] == 2
    assert not (tmp_path / "mlflow.db").exists()


# -- lifecycle against the MOCKED API ------------------------------------------------------
def _running(name="p-1", **kw):
    return pod(name, **kw)


def test_ready_gives_an_endpoint_with_logs_and_stop_deletes(make_spec):
    cluster = MockCluster(
        states=[status_progress(), status_progress(), status_ready("x", "bench")],
        pods=[[_running(running=False, waiting="ContainerCreating")], [_running()]],
        logs=[{}, {"p-1": "Load weight begin.\n"}, {"p-1": f"Load weight end.\n{READY}\n"}],
    )
    lau = launcher(cluster)
    spec = make_spec("params.tp-size=2")
    ep = lau.start(spec)
    assert ep.base_url == "http://x.bench.svc.cluster.local:8080"
    assert ep.model_name == "meta-llama/Llama-3.1-8B-Instruct"
    assert READY in ep.log_path.read_text()
    created = cluster.created
    assert created["spec"]["engine"]["runner"]["resources"]["limits"]["nvidia.com/gpu"] == 2
    (create,) = [c for c in cluster.calls if c[0] == "create"]
    assert create[1][:4] == ("ome.io", "v1beta1", "bench", "inferenceservices")
    pods_call = next(c for c in cluster.calls if c[0] == "list_pods")
    assert pods_call[2]["label_selector"] == (
        f"ome.io/inferenceservice={created['metadata']['name']},component=engine"
    )
    assert lau.poll(ep) is None
    lau.stop(ep)
    assert cluster.deleted
    lau.stop(ep)  # idempotent
    assert cluster.names().count("delete") == 1
    assert not list(Path(os.environ["AUTOTUNE_STATE_DIR"]).rglob("isvc-*.json"))


@pytest.mark.parametrize(
    "log_text,message,expected",
    [
        (OOM_LOG, "", Failure.OOM),
        (
            "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.\n",
            "",
            Failure.OOM,
        ),
        (
            "launch_server.py: error: ambiguous option: --pp could match --pp-size\n",
            "",
            Failure.BAD_FLAG,
        ),
        ("Capture cuda graph failed: boom\n", "", Failure.CUDA_GRAPH),
        ("segfault\n", "exit 139", Failure.CRASH),
    ],
)
def test_blocked_by_failed_load_is_classified_from_the_pod_log(
    make_spec, log_text, message, expected
):
    cluster = MockCluster(
        states=[status_progress(), status_failed_load(message)],
        pods=[
            [_running()],
            [_running(waiting="CrashLoopBackOff", last_terminated=(1, "Error"), restarts=1)],
        ],
        logs=[{"p-1": "starting\n"}, {"p-1": "restarted\n"}],
        previous_logs={"p-1": log_text},
    )
    lau = launcher(cluster)
    spec = make_spec()
    with pytest.raises(TrialFailure) as err:
        lau.start(spec)
    assert err.value.failure == expected
    assert "BlockedByFailedLoad" in str(err.value)
    assert cluster.deleted, "a failed start deletes its InferenceService"
    assert log_text.strip() in (spec.workdir / "engine.log").read_text()


def test_crashed_container_fails_before_ome_reports_it(make_spec):
    cluster = MockCluster(
        states=[status_progress()],
        pods=[[_running(terminated=(1, "Error"))]],
        logs=[{"p-1": OOM_LOG}],
    )
    with pytest.raises(TrialFailure) as err:
        launcher(cluster).start(make_spec())
    assert err.value.failure == Failure.OOM
    assert cluster.deleted


def test_oom_killed_container_is_oom(make_spec):
    cluster = MockCluster(
        states=[status_progress()],
        pods=[
            [_running(waiting="CrashLoopBackOff", last_terminated=(137, "OOMKilled"), restarts=1)]
        ],
        logs=[{"p-1": "loading\n"}],
    )
    with pytest.raises(TrialFailure) as err:
        launcher(cluster).start(make_spec())
    assert err.value.failure == Failure.OOM and "OOMKilled" in str(err.value)


@pytest.mark.parametrize(
    "setup,words",
    [
        (
            {"create_error": api_error(400, 'admission webhook denied: model "nope" not found')},
            "webhook",
        ),
        (
            {"events": [event("RuntimeValidationError", "Runtime X does not support model Y")]},
            "Runtime X",
        ),
        ({"pods": [[_running(waiting="ImagePullBackOff")]]}, "ImagePullBackOff"),
        ({"states": [{"modelStatus": {"transitionStatus": "InvalidSpec"}}]}, "InvalidSpec"),
        (
            {
                "states": [
                    {
                        "modelStatus": {
                            "transitionStatus": "BlockedByFailedLoad",
                            "lastFailureInfo": {"reason": "BaseModelNotReady"},
                        }
                    }
                ]
            },
            "BaseModelNotReady",
        ),  # fmt: skip
    ],
)
def test_setup_problems_are_deploy_errors(make_spec, setup, words):
    cluster = MockCluster(**{"states": [status_progress()], **setup})
    with pytest.raises(TrialFailure) as err:
        launcher(cluster).start(make_spec())
    assert err.value.failure == Failure.DEPLOY_ERROR
    assert words in str(err.value)
    if "create_error" not in setup:
        assert cluster.deleted


def test_never_ready_times_out_and_deletes(make_spec):
    ticks = iter(range(0, 10_000, 60))
    cluster = MockCluster(
        states=[status_progress()],
        pods=[[_running(phase="Pending", running=False, waiting="ContainerCreating",
                        conditions=[("PodScheduled", "False", "0/4 nodes: Insufficient nvidia.com/gpu")])]],
    )  # fmt: skip
    lau = launcher(cluster, startup_timeout_s=600, clock=lambda: next(ticks))
    with pytest.raises(TrialFailure) as err:
        lau.start(make_spec())
    assert err.value.failure == Failure.STARTUP_TIMEOUT
    assert "Insufficient nvidia.com/gpu" in str(err.value)
    assert "MinimumReplicasUnavailable" in str(err.value)
    assert cluster.deleted


def test_timeout_with_an_oom_in_the_log_is_oom(make_spec):
    ticks = iter(range(0, 10_000, 60))
    cluster = MockCluster(states=[status_progress()], pods=[[_running()]], logs=[{"p-1": OOM_LOG}])
    with pytest.raises(TrialFailure) as err:
        launcher(cluster, startup_timeout_s=300, clock=lambda: next(ticks)).start(make_spec())
    assert err.value.failure == Failure.OOM


def test_poll_reports_a_restart_after_ready(make_spec):
    cluster = MockCluster(
        states=[status_ready()],
        pods=[[_running()], [_running()], [_running(waiting="CrashLoopBackOff", last_terminated=(1, "Error"), restarts=1)]],
        logs=[{"p-1": READY + "\n"}, {"p-1": READY + "\n"}, {"p-1": "restarting\n"}],
        previous_logs={"p-1": READY + "\nScheduler hit an exception: boom\n"},
    )  # fmt: skip
    lau = launcher(cluster)
    ep = lau.start(make_spec())
    assert lau.poll(ep) is None  # step 1: same pod, no restart
    assert lau.poll(ep) == 1  # step 2: restarted with exit code 1
    assert "Scheduler hit an exception" in ep.log_path.read_text()
    lau.stop(ep)
    assert cluster.deleted


def test_leftover_of_a_dead_tuner_is_replaced(make_spec):
    spec = make_spec()
    old = launcher().manifest(spec)
    old["metadata"]["annotations"]["autotune.io/owner"] = f"{2**22 + 12345}@{os.uname().nodename}"
    cluster = MockCluster(states=[status_ready()], pods=[[_running()]], existing=old)
    lau = launcher(cluster)
    ep = lau.start(spec)
    assert cluster.names()[:2] == ["create", "get"] and "delete" in cluster.names()
    lau.stop(ep)


def test_existing_isvc_of_a_live_tuner_is_left_alone(make_spec):
    spec = make_spec()
    old = launcher().manifest(spec)  # owner = this process
    cluster = MockCluster(states=[status_ready()], existing=old)
    with pytest.raises(TrialFailure) as err:
        launcher(cluster).start(spec)
    assert err.value.failure == Failure.DEPLOY_ERROR and "already exists" in str(err.value)
    assert "delete" not in cluster.names()


def test_stop_never_raises_and_keeps_the_registry_entry_on_failure(make_spec):
    cluster = MockCluster(states=[status_ready()], pods=[[_running()]], logs=[{"p-1": READY}])
    lau = launcher(cluster)
    ep = lau.start(make_spec())
    cluster.delete_error = api_error(500, "etcd timeout")
    lau.stop(ep)  # logs, does not raise
    assert list(Path(os.environ["AUTOTUNE_STATE_DIR"]).rglob("isvc-*.json"))


def test_no_cluster_is_a_deploy_error(make_spec, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(TrialFailure) as err:
        OmeLauncher().start(make_spec())
    assert err.value.failure == Failure.DEPLOY_ERROR


FAKE_KUBECTL = textwrap.dedent(
    """\
    #!{python}
    # Stand-in for `kubectl port-forward` (no cluster here): serves /health itself.
    import http.server, sys
    open({argv_file!r}, "w").write(" ".join(sys.argv[1:]))
    local = int(sys.argv[-1].split(":")[0])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
        def log_message(self, *a):
            pass
    print("Forwarding from 127.0.0.1:%d -> 8080" % local, flush=True)
    http.server.HTTPServer(("127.0.0.1", local), H).serve_forever()
    """
)


def test_port_forward_endpoint_passes_the_spines_readiness_check(make_spec, tmp_path):
    kubectl = tmp_path / "kubectl"
    argv_file = tmp_path / "argv"
    kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable, argv_file=str(argv_file)))
    kubectl.chmod(0o755)
    cluster = MockCluster(states=[status_ready()], pods=[[_running("engine-pod-1")]],
                          logs=[{"engine-pod-1": READY + "\n"}])  # fmt: skip
    lau = launcher(cluster, access="port_forward", kubectl=str(kubectl), kube_context="gpu-ctx")
    spec = make_spec()
    ep = lau.start(spec)
    try:
        assert ep.base_url.startswith("http://127.0.0.1:")
        waited = wait_ready(
            lau, ep, health_path=spec.runtime.health_path,
            ready_pattern=spec.runtime.ready_log_pattern,
            failure_patterns=spec.runtime.failure_patterns, timeout_s=10,
        )  # fmt: skip
        assert waited < 10
        args = argv_file.read_text().split()
        assert args[:2] == ["port-forward", "--namespace"] and "pod/engine-pod-1" in args
        assert args[args.index("--context") :][:2] == ["--context", "gpu-ctx"]
        assert args[-1].endswith(":8080")
        pf = ep.handle.port_forward
    finally:
        lau.stop(ep)
    assert pf.poll() is not None, "stop ends the port-forward process"
    assert cluster.deleted


def test_missing_kubectl_is_a_deploy_error_and_deletes(make_spec):
    cluster = MockCluster(states=[status_ready()], pods=[[_running()]])
    lau = launcher(cluster, access="port_forward", kubectl="/nonexistent/kubectl")
    with pytest.raises(TrialFailure) as err:
        lau.start(make_spec())
    assert err.value.failure == Failure.DEPLOY_ERROR and "in_cluster" in str(err.value)
    assert cluster.deleted


def test_the_crd_check_is_not_vacuous(make_spec):
    m = launcher().manifest(make_spec())
    m["spec"]["engine"]["maxReplicas"] = "one"
    m["spec"]["engine"]["runner"]["args"] = [8]
    errors = list(crd_validator("inferenceservices").iter_errors(m))
    assert len(errors) == 2


def test_ctrl_c_while_waiting_still_deletes(make_spec):
    cluster = MockCluster(states=[status_progress()], pods=[[_running()]])

    def interrupt(_s):
        raise KeyboardInterrupt

    lau = OmeLauncher(clients=cluster.clients(), namespace="bench", poll_s=1.0, sleep=interrupt)
    with pytest.raises(KeyboardInterrupt):
        lau.start(make_spec())
    assert cluster.deleted
