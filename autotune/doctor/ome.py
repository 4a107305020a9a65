"""deploy=ome checks: the cluster, OME's CRDs and objects, GPU capacity, RBAC, the HF token.

    for check in ome_checks(cfg): ...               # contacts the cluster of deploy.kube_context

Checks stop after the first one that makes the rest meaningless (no context, API
down). Every API call has a short timeout, so a preflight answers in seconds.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from autotune.doctor.common import gpus_needed
from autotune.doctor.result import Check

GROUP, VERSION = "ome.io", "v1beta1"
TIMEOUT_S = 5
# The CRDs a study's InferenceService needs, by plural.
CRDS = ("inferenceservices", "clusterservingruntimes", "clusterbasemodels")
# What a trial does in its namespace: (verb, API group, resource, subresource).
ACCESS = (
    ("create", GROUP, "inferenceservices", ""),
    ("delete", GROUP, "inferenceservices", ""),
    ("get", GROUP, "inferenceservices", ""),
    ("list", "", "pods", ""),
    ("get", "", "pods", "log"),
    ("list", "", "events", ""),
)
# Hub organisations whose models are gated (an HF token is needed to download them).
GATED_ORGS = ("meta-llama", "mistralai", "google")
# OME reads a ClusterBaseModel's token Secret from its own namespace.
OME_NAMESPACE = "ome"


@dataclass
class KubeApis:
    """The API groups the checks use (``CustomObjectsApi``, ``CoreV1Api``, ``AuthorizationV1Api``)."""

    custom: Any
    core: Any
    authz: Any
    where: str = ""

    @classmethod
    def connect(cls, context: str | None) -> KubeApis:
        from kubernetes import client

        from autotune.launchers.ome import KubeClients

        kc = KubeClients.connect(context)
        api = kc.core.api_client
        return cls(kc.custom, kc.core, client.AuthorizationV1Api(api), api.configuration.host)


def _status(e: Exception) -> int | None:
    return getattr(e, "status", None)


def _why(e: Exception) -> str:
    from autotune.launchers.ome import api_message

    return f"HTTP {_status(e)}: {api_message(e)}" if _status(e) else f"{type(e).__name__}: {e}"


def ome_checks(cfg: DictConfig, apis: KubeApis | None = None) -> list[Check]:
    """Every OME check of study ``cfg``; ``apis`` defaults to deploy.kube_context's cluster."""
    context = cfg.deploy.get("kube_context")
    if apis is None:
        try:
            apis = KubeApis.connect(context)
        except Exception as e:
            return [
                Check.fail(
                    "kube context",
                    f"no Kubernetes context {context or '(current)'}: {type(e).__name__}: {str(e)[:160]}",
                    "set KUBECONFIG / `kubectl config use-context`, or deploy.kube_context=",
                )
            ]
    try:
        apis.core.get_api_resources(_request_timeout=TIMEOUT_S)
    except Exception as e:
        return [
            Check.fail(
                "kube API",
                f"{apis.where or 'the API server'} does not answer ({_why(e)})",
                "check the cluster and your network / VPN, or deploy.kube_context=",
            )
        ]
    out = [
        Check.ok(
            "kube API", f"{apis.where or 'API server'} answers (context {context or 'current'})"
        )
    ]
    launcher, spec = _render(cfg)
    values = launcher.values(spec)
    out.append(crds(apis, launcher.manifest(spec)))
    runtime_check = serving_runtime(apis, cfg.deploy.namespace, launcher.serving_runtime)
    model_check, base_model = base_model_ready(apis, cfg.deploy.namespace, values["base_model"])
    out += [
        runtime_check,
        model_check,
        node_gpus(apis, gpus_needed(cfg) or 1, launcher.node_selector),
    ]
    out += [access(apis, cfg.deploy.namespace), hf_token(apis, base_model)]
    return out


def _render(cfg: DictConfig) -> tuple[Any, Any]:
    """The launcher and a trial spec with the study's params (what a trial would create)."""
    from autotune.deploy import LaunchSpec, create_launcher
    from autotune.params import normalize

    params = normalize(dict(cfg.params), cfg.runtime.flags, cfg.runtime.aliases)
    workdir = Path(tempfile.gettempdir())
    spec = LaunchSpec.for_trial(cfg, params, study="doctor", trial="trial-0", workdir=workdir)
    return create_launcher(cfg.deploy), spec


def unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Keys of ``obj`` that the OpenAPI ``schema`` does not declare (as dotted paths).

    >>> unknown_fields({"spec": {"a": 1, "b": 2}}, {"properties": {"spec": {"properties": {"a": {}}}}})
    ['spec.b']
    """
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(obj, list):
        return [
            p
            for i, v in enumerate(obj)
            for p in unknown_fields(v, schema.get("items") or {}, f"{path}[{i}]")
        ]
    if not isinstance(obj, dict):
        return []
    props = schema.get("properties")
    extra = schema.get("additionalProperties")
    out = []
    for key, value in obj.items():
        where = f"{path}.{key}" if path else str(key)
        if props is not None and key in props:
            out += unknown_fields(value, props[key], where)
        elif isinstance(extra, dict):
            out += unknown_fields(value, extra, where)
        elif props is not None:  # an object without declared fields (metadata) accepts any
            out.append(where)
    return out


def crds(apis: KubeApis, manifest: dict[str, Any]) -> Check:
    """OME's CRDs are installed, serve v1beta1, and know every field the manifest sets."""
    missing, stale = [], []
    for plural in CRDS:
        try:
            crd = apis.custom.get_cluster_custom_object(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                f"{plural}.{GROUP}",
                _request_timeout=TIMEOUT_S,
            )
        except Exception as e:
            if _status(e) == 404:
                missing.append(plural)
                continue
            return Check.warn(
                "OME CRDs",
                f"cannot read CRD {plural}.{GROUP} ({_why(e)})",
                "ask for read access to customresourcedefinitions, or check with kubectl get crd",
            )
        versions = {
            v.get("name"): v for v in crd.get("spec", {}).get("versions", []) if v.get("served")
        }
        if VERSION not in versions:
            stale.append(f"{plural} serves {sorted(versions)} (needs {VERSION})")
        elif plural == "inferenceservices":
            schema = versions[VERSION].get("schema", {}).get("openAPIV3Schema", {})
            stale += [
                f"inferenceservices has no field {p}" for p in unknown_fields(manifest, schema)
            ]
    fix = "install or upgrade OME's CRDs (helm upgrade --install ome-crd oci://ghcr.io/moirai-internal/charts/ome-crd)"
    if missing:
        return Check.fail(
            "OME CRDs", f"not installed: {', '.join(f'{p}.{GROUP}' for p in missing)}", fix
        )
    if stale:
        return Check.fail("OME CRDs", "; ".join(stale[:4]), fix)
    return Check.ok("OME CRDs", f"{', '.join(CRDS)} serve {VERSION} with every field autotune sets")


def _get(
    apis: KubeApis, namespace: str, plural: str, cluster_plural: str, name: str
) -> tuple[dict[str, Any] | None, str]:
    """The namespaced object, else the cluster one (OME's own lookup order), and its kind."""
    try:
        return apis.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name, _request_timeout=TIMEOUT_S
        ), plural
    except Exception as e:
        if _status(e) != 404:
            raise
    try:
        return apis.custom.get_cluster_custom_object(
            GROUP, VERSION, cluster_plural, name, _request_timeout=TIMEOUT_S
        ), cluster_plural
    except Exception as e:
        if _status(e) != 404:
            raise
    return None, cluster_plural


def serving_runtime(apis: KubeApis, namespace: str, name: str | None) -> Check:
    """The (Cluster)ServingRuntime the study names exists and is enabled."""
    if not name:
        return Check.warn(
            "serving runtime",
            "deploy.serving_runtime is not set: OME auto-selects one (autoSelect: true)",
            "name it: deploy.serving_runtime=<ClusterServingRuntime>",
        )
    try:
        obj, kind = _get(apis, namespace, "servingruntimes", "clusterservingruntimes", name)
    except Exception as e:
        return Check.warn(
            "serving runtime",
            f"cannot read {name} ({_why(e)})",
            "ask for read access to OME runtimes",
        )
    if obj is None:
        return Check.fail(
            "serving runtime",
            f"no ServingRuntime or ClusterServingRuntime {name}",
            "create it (examples/ome/) or fix deploy.serving_runtime",
        )
    if (obj.get("spec") or {}).get("disabled"):
        return Check.fail(
            "serving runtime", f"{kind} {name} is disabled", f"set spec.disabled: false on {name}"
        )
    return Check.ok("serving runtime", f"{kind} {name} exists, enabled")


def base_model_ready(
    apis: KubeApis, namespace: str, name: str
) -> tuple[Check, dict[str, Any] | None]:
    """The (Cluster)BaseModel exists and its ``status.state`` is Ready (weights on the nodes)."""
    try:
        obj, kind = _get(apis, namespace, "basemodels", "clusterbasemodels", name)
    except Exception as e:
        return Check.warn(
            "base model",
            f"cannot read {name} ({_why(e)})",
            "ask for read access to OME base models",
        ), None
    if obj is None:
        return Check.fail(
            "base model",
            f"no BaseModel or ClusterBaseModel {name}",
            "create it (examples/ome/) or set deploy.base_model=",
        ), None
    obj = {**obj, "kind": "ClusterBaseModel" if kind == "clusterbasemodels" else "BaseModel"}
    state = (obj.get("status") or {}).get("state") or "no status yet"
    if state != "Ready":
        return Check.fail(
            "base model",
            f"{obj['kind']} {name} is {state}",
            f"wait for the download (kubectl get {kind} {name}) or fix its storage",
        ), obj
    return Check.ok("base model", f"{obj['kind']} {name} Ready"), obj


def node_gpus(apis: KubeApis, need: int, node_selector: dict[str, str]) -> Check:
    """Some schedulable node (matching deploy.node_selector) has ``need`` allocatable GPUs."""
    try:
        nodes = apis.core.list_node(_request_timeout=TIMEOUT_S).items
    except Exception as e:
        return Check.warn(
            "GPU nodes",
            f"cannot list nodes ({_why(e)})",
            "ask for `list nodes`, or check with kubectl describe nodes",
        )
    counts = {}
    for n in nodes:
        labels = n.metadata.labels or {}
        if (n.spec and n.spec.unschedulable) or any(
            labels.get(k) != v for k, v in node_selector.items()
        ):
            continue
        counts[n.metadata.name] = int((n.status.allocatable or {}).get("nvidia.com/gpu", 0) or 0)
    fitting = sorted(k for k, c in counts.items() if c >= need)
    most = max(counts.values(), default=0)
    where = f" matching {node_selector}" if node_selector else ""
    if not fitting:
        return Check.fail(
            "GPU nodes",
            f"no schedulable node{where} has {need} allocatable nvidia.com/gpu (most: {most})",
            "lower tp-size, fix deploy.node_selector, or add GPU nodes (is the NVIDIA device plugin running?)",
        )
    return Check.ok(
        "GPU nodes",
        f"{len(fitting)} node(s){where} with >= {need} allocatable nvidia.com/gpu (most: {most})",
    )


def access(apis: KubeApis, namespace: str) -> Check:
    """RBAC lets this user do what a trial does in the namespace (SelfSubjectAccessReview)."""
    from kubernetes import client

    denied = []
    for verb, group, resource, sub in ACCESS:
        attrs = client.V1ResourceAttributes(
            namespace=namespace, verb=verb, group=group, resource=resource, subresource=sub or None
        )
        body = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attrs)
        )
        try:
            review = apis.authz.create_self_subject_access_review(body, _request_timeout=TIMEOUT_S)
        except Exception as e:
            return Check.warn(
                "RBAC",
                f"cannot ask the API ({_why(e)})",
                f"check with kubectl auth can-i create inferenceservices -n {namespace}",
            )
        if not review.status.allowed:
            denied.append(f"{verb} {resource}{'/' + sub if sub else ''}")
    if denied:
        return Check.fail(
            "RBAC",
            f"not allowed in namespace {namespace}: {', '.join(denied)}",
            f"ask for a Role granting them in {namespace} (kubectl auth can-i to verify), or pick another deploy.namespace",
        )
    return Check.ok(
        "RBAC", f"create/delete InferenceServices, read pods/logs/events in {namespace}"
    )


def hf_token(apis: KubeApis, base_model: dict[str, Any] | None) -> Check:
    """A base model that downloads with a token has its Secret (``storage.key``)."""
    if base_model is None:
        return Check.ok("HF token", "no base model to check")
    storage = (base_model.get("spec") or {}).get("storage") or {}
    secret = storage.get("key")
    uri = str(storage.get("storageUri") or "")
    if not secret:
        org = uri.removeprefix("hf://").partition("/")[0]
        if uri.startswith("hf://") and org in GATED_ORGS:
            return Check.warn(
                "HF token",
                f"{uri} looks gated but the base model names no token Secret",
                "create a Secret with the token and set spec.storage.key on the base model",
            )
        return Check.ok("HF token", "not needed (no storage.key)")
    ns = (
        OME_NAMESPACE
        if base_model["kind"] == "ClusterBaseModel"
        else base_model["metadata"].get("namespace", "default")
    )
    data_key = (storage.get("parameters") or {}).get("secretKey", "token")
    try:
        found = apis.core.read_namespaced_secret(secret, ns, _request_timeout=TIMEOUT_S)
    except Exception as e:
        if _status(e) == 404:
            return Check.fail(
                "HF token",
                f"Secret {ns}/{secret} (storage.key of the base model) does not exist",
                f"kubectl create secret generic {secret} -n {ns} --from-literal={data_key}=<HF token>",
            )
        return Check.warn(
            "HF token",
            f"cannot read Secret {ns}/{secret} ({_why(e)})",
            "check it exists with an account that may read secrets",
        )
    if data_key not in (found.data or {}):
        return Check.fail(
            "HF token",
            f"Secret {ns}/{secret} has no key {data_key!r}",
            f"add the token under {data_key!r}",
        )
    return Check.ok("HF token", f"Secret {ns}/{secret} has {data_key!r}")
