"""OME checks against a MOCKED Kubernetes API (tests/launchers/kube_mock.py: every call
checked against the real client's signature). What the API returns comes from OME's
CRD schemas (tests/launchers/crds, from /work/shared/ome-crds), OME's sample
ClusterBaseModel / ClusterServingRuntime, and a node list fixture deserialised by the
real kubernetes client. The missing-kubeconfig path is real."""

from __future__ import annotations

import base64
import copy
import functools
import gzip
import json

import pytest
import yaml
from doctor_support import FIXTURES, LAUNCHER_TESTS
from kube_mock import MockCluster, api_error
from kubernetes import client as k8s

from autotune.doctor import Status
from autotune.doctor.ome import ome_checks, unknown_fields

MODEL = "llama-3-1-8b-instruct"
RUNTIME = "srt-llama-3-1-8b-instruct"
NS = "bench"


@functools.cache
def _crd(plural: str) -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with gzip.open(LAUNCHER_TESTS / "crds" / f"ome.io_{plural}.yaml.gz", "rt") as f:
        return yaml.load(f, Loader=loader)  # noqa: S506 - a safe loader


def crd(plural: str) -> dict:
    return copy.deepcopy(_crd(plural))


def sample(kind: str) -> dict:
    (path,) = FIXTURES.glob(f"{kind}-*.yaml")
    return yaml.safe_load(path.read_text())


def recorded_nodes() -> list[k8s.V1Node]:
    """fixtures/nodes.json through the real client's deserialiser (as list_node does)."""
    text = (FIXTURES / "nodes.json").read_text()
    return k8s.ApiClient().deserialize(text, "V1NodeList", "application/json").items


def healthy() -> MockCluster:
    """A cluster where a study of llama-3.1-8b-instruct would start."""
    base_model = {
        **sample("clusterbasemodel"),
        "status": {"state": "Ready", "nodesReady": ["gpu-a-01"]},
    }
    return MockCluster(
        states=[],
        cluster_objects={
            **{
                ("customresourcedefinitions", f"{p}.ome.io"): crd(p)
                for p in ("inferenceservices", "clusterservingruntimes", "clusterbasemodels")
            },
            ("clusterbasemodels", MODEL): base_model,
            ("clusterservingruntimes", RUNTIME): sample("clusterservingruntime"),
        },
        nodes=recorded_nodes(),
        secrets={
            ("ome", "hf-token"): k8s.V1Secret(data={"token": base64.b64encode(b"hf_x").decode()})
        },
    )


@pytest.fixture
def ome_cfg(study_cfg):
    def _make(*overrides: str):
        return study_cfg(
            "deploy=ome", f"deploy.namespace={NS}", f"deploy.serving_runtime={RUNTIME}", *overrides
        )

    return _make


def run(cfg, cluster: MockCluster) -> dict:
    return {c.name: c for c in ome_checks(cfg, cluster.doctor_apis())}


def test_mocked_healthy_cluster_passes(ome_cfg):
    cluster = healthy()
    checks = run(ome_cfg(), cluster)
    assert {n: c.status for n, c in checks.items()} == dict.fromkeys(
        ["kube API", "OME CRDs", "serving runtime", "base model", "GPU nodes", "RBAC", "HF token"],
        Status.OK,
    ), checks
    assert (
        checks["OME CRDs"].verdict
        == "inferenceservices, clusterservingruntimes, clusterbasemodels serve v1beta1 with every field autotune sets"
    )
    assert checks["serving runtime"].verdict == f"clusterservingruntimes {RUNTIME} exists, enabled"
    assert checks["base model"].verdict == f"ClusterBaseModel {MODEL} Ready"
    assert checks["GPU nodes"].verdict == "3 node(s) with >= 1 allocatable nvidia.com/gpu (most: 8)"
    assert checks["HF token"].verdict == "Secret ome/hf-token has 'token'"
    reviews = [c[1][0].spec.resource_attributes for c in cluster.calls if c[0] == "access_review"]
    assert {(a.verb, a.resource, a.subresource) for a in reviews} == {
        ("create", "inferenceservices", None), ("delete", "inferenceservices", None),
        ("get", "inferenceservices", None), ("list", "pods", None), ("get", "pods", "log"),
        ("list", "events", None),
    }  # fmt: skip
    assert all(a.namespace == NS for a in reviews)
    # Every call had a timeout: a preflight never hangs on a slow API server.
    assert all(kw.get("_request_timeout") for _, _, kw in cluster.calls)


def test_no_kube_context(ome_cfg, monkeypatch, tmp_path):
    """Real: the kubernetes client finds no kubeconfig."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    (check,) = ome_checks(ome_cfg())
    assert check.name == "kube context" and check.status is Status.FAIL
    assert check.verdict.startswith("no Kubernetes context (current): ")
    assert "kubectl config use-context" in check.fix


def test_mocked_api_down(ome_cfg):
    cluster = healthy()
    cluster.api_error = api_error(503, "the server is currently unable to handle the request")
    (check,) = ome_checks(ome_cfg(), cluster.doctor_apis())
    assert check.name == "kube API" and check.status is Status.FAIL
    assert (
        check.verdict
        == "https://mock:6443 does not answer (HTTP 503: the server is currently unable to handle the request)"
    )


def test_mocked_crd_not_installed(ome_cfg):
    cluster = healthy()
    del cluster.cluster_objects[("customresourcedefinitions", "clusterbasemodels.ome.io")]
    check = run(ome_cfg(), cluster)["OME CRDs"]
    assert (
        check.status is Status.FAIL and check.verdict == "not installed: clusterbasemodels.ome.io"
    )


def test_mocked_crd_older_than_the_manifest(ome_cfg):
    """An OME whose InferenceService schema lacks spec.engine (pre-engine API) is too old."""
    cluster = healthy()
    isvc = cluster.cluster_objects[("customresourcedefinitions", "inferenceservices.ome.io")]
    (v,) = isvc["spec"]["versions"]
    del v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["engine"]
    check = run(ome_cfg(), cluster)["OME CRDs"]
    assert (
        check.status is Status.FAIL
        and check.verdict == "inferenceservices has no field spec.engine"
    )


def test_mocked_crd_without_v1beta1(ome_cfg):
    cluster = healthy()
    runtimes = cluster.cluster_objects[
        ("customresourcedefinitions", "clusterservingruntimes.ome.io")
    ]
    runtimes["spec"]["versions"][0]["name"] = "v1alpha1"
    check = run(ome_cfg(), cluster)["OME CRDs"]
    assert check.verdict == "clusterservingruntimes serves ['v1alpha1'] (needs v1beta1)"


def test_unknown_fields_against_the_real_schema():
    (v,) = crd("inferenceservices")["spec"]["versions"]
    schema = v["schema"]["openAPIV3Schema"]
    body = {"apiVersion": "ome.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"model": {"name": "m"}, "engine": {"minReplicas": 1, "replicaz": 2}, "predictor": {}}}  # fmt: skip
    assert unknown_fields(body, schema) == ["spec.engine.replicaz"]


def test_mocked_runtime_missing_disabled_or_unset(ome_cfg):
    cluster = healthy()
    assert (
        run(ome_cfg("deploy.serving_runtime=nope"), cluster)["serving runtime"].verdict
        == "no ServingRuntime or ClusterServingRuntime nope"
    )
    cluster.cluster_objects[("clusterservingruntimes", RUNTIME)]["spec"]["disabled"] = True
    disabled = run(ome_cfg(), cluster)["serving runtime"]
    assert (
        disabled.status is Status.FAIL
        and disabled.verdict == f"clusterservingruntimes {RUNTIME} is disabled"
    )
    assert (
        run(ome_cfg("deploy.serving_runtime=null"), cluster)["serving runtime"].status
        is Status.WARN
    )


def test_mocked_namespaced_runtime_wins(ome_cfg):
    cluster = healthy()
    cluster.namespaced_objects[("servingruntimes", NS, RUNTIME)] = sample("clusterservingruntime")
    assert (
        run(ome_cfg(), cluster)["serving runtime"].verdict
        == f"servingruntimes {RUNTIME} exists, enabled"
    )


def test_mocked_base_model_not_ready_or_missing(ome_cfg):
    cluster = healthy()
    cluster.cluster_objects[("clusterbasemodels", MODEL)]["status"] = {"state": "In_Transit"}
    check = run(ome_cfg(), cluster)["base model"]
    assert (
        check.status is Status.FAIL and check.verdict == f"ClusterBaseModel {MODEL} is In_Transit"
    )
    missing = run(ome_cfg("deploy.base_model=other"), cluster)["base model"]
    assert (
        missing.status is Status.FAIL
        and missing.verdict == "no BaseModel or ClusterBaseModel other"
    )


def test_recorded_nodes_gpu_capacity(ome_cfg):
    cluster = healthy()
    assert (
        run(ome_cfg("params.tp-size=8"), cluster)["GPU nodes"].verdict
        == "2 node(s) with >= 8 allocatable nvidia.com/gpu (most: 8)"
    )
    h100 = run(ome_cfg("params.tp-size=8", "+deploy.node_selector.gpu-type=h100"), cluster)[
        "GPU nodes"
    ]
    assert (
        h100.verdict
        == "1 node(s) matching {'gpu-type': 'h100'} with >= 8 allocatable nvidia.com/gpu (most: 8)"
    )
    l40s = run(ome_cfg("params.tp-size=4", "+deploy.node_selector.gpu-type=l40s"), cluster)[
        "GPU nodes"
    ]
    assert l40s.status is Status.FAIL
    assert (
        l40s.verdict
        == "no schedulable node matching {'gpu-type': 'l40s'} has 4 allocatable nvidia.com/gpu (most: 2)"
    )


def test_mocked_rbac_denied(ome_cfg):
    cluster = healthy()
    cluster.denied = {("delete", "inferenceservices"), ("get", "pods/log")}
    check = run(ome_cfg(), cluster)["RBAC"]
    assert check.status is Status.FAIL
    assert check.verdict == f"not allowed in namespace {NS}: delete inferenceservices, get pods/log"


def test_mocked_hf_token_secret(ome_cfg):
    cluster = healthy()
    cluster.secrets[("ome", "hf-token")] = k8s.V1Secret(data={"HF_TOKEN": "eA=="})
    wrong = run(ome_cfg(), cluster)["HF token"]
    assert wrong.status is Status.FAIL and wrong.verdict == "Secret ome/hf-token has no key 'token'"
    del cluster.secrets[("ome", "hf-token")]
    gone = run(ome_cfg(), cluster)["HF token"]
    assert gone.status is Status.FAIL
    assert (
        gone.fix == "kubectl create secret generic hf-token -n ome --from-literal=token=<HF token>"
    )
    del cluster.cluster_objects[("clusterbasemodels", MODEL)]["spec"]["storage"]["key"]
    gated = run(ome_cfg(), cluster)["HF token"]
    assert gated.status is Status.WARN and "looks gated" in gated.verdict


def test_report_serialises(ome_cfg):
    from autotune.doctor.result import Report

    report = Report("ome", ome_checks(ome_cfg(), healthy().doctor_apis()))
    assert json.loads(json.dumps(report.as_dict()))["ok"] is True
