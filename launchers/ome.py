"""deploy=ome: the engine as an OME InferenceService on Kubernetes.

    launcher = OmeLauncher(namespace="bench", base_model="llama-3-1-8b-instruct",
                           serving_runtime="srt-llama-3-1-8b-instruct")
    launcher.render(spec)["inferenceservice.yaml"]   # the manifest; contacts nothing
    endpoint = launcher.start(spec)   # blocks until the ISVC is Ready (or TrialFailure)
    launcher.stop(endpoint)           # logs saved, ISVC deleted, port-forward stopped

The manifest comes from ``templates/inferenceservice.yaml.j2``: the base model and
runtime by name, the trial's flags as ``engine.runner.args`` (OME appends them to the
runtime's ``command``; SGLang's argparse keeps a flag's last occurrence, so they win),
one replica, ``Recreate`` rollout, and ``nvidia.com/gpu`` = tp-size as request AND limit.

Unlike the local and docker targets, :meth:`OmeLauncher.start` blocks until the
InferenceService is ``Ready``: the cluster, not autotune, probes the engine, and a
failure shows in ``status.modelStatus`` / pod state / events rather than in a process
exit code. On failure it raises a classified :class:`TrialFailure` (oom, cuda_graph,
bad_flag, crash from the engine log; deploy_error; startup_timeout) after saving the
pod log and deleting the ISVC. Once Ready, the engine log (``kubectl logs`` of the
``ome-container``) is in ``endpoint.log_path`` and ``endpoint.base_url`` answers
``/health``: through ``kubectl port-forward`` on 127.0.0.1 (``access=port_forward``,
for a tuner outside the cluster) or ``status.url`` (``access=in_cluster``) — so the
spine's usual readiness check (health probe AND ready log line) passes at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import yaml

from autotune.deploy import leftovers
from autotune.deploy.base import DeployConfig, Endpoint, Launcher, LaunchSpec, free_port
from autotune.deploy.failures import Failure, TrialFailure, failure_in, last_lines
from autotune.deploy.processes import stop_process_group
from autotune.owner import owner_id
from autotune.params import gpu_count, to_argv
from autotune.secrets import is_secret_name

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "ome.io", "v1beta1", "inferenceservices"
ENGINE_CONTAINER = "ome-container"  # the only container OME's status logic looks at
TEMPLATES = Path(__file__).resolve().parent / "templates"
# The engine Service is "<name>-engine" and must stay a 63-character DNS label.
MAX_NAME = 50
MANAGED_BY = {"app.kubernetes.io/managed-by": "autotune"}
# Events OME records on the ISVC when it cannot even build the deployment.
DEPLOY_ERROR_EVENTS = {
    "ModelReconcileError",
    "RuntimeValidationError",
    "RuntimeFetchError",
    "RuntimeSelectionError",
    "MergeSpecsError",
    "DeploymentModeError",
    "AcceleratorClassError",
    "InternalError",
}
# lastFailureInfo reasons that are about the setup, not the engine.
DEPLOY_ERROR_REASONS = {
    "RuntimeDisabled",
    "NoSupportingRuntime",
    "RuntimeNotRecognized",
    "InvalidPredictorSpec",
    "BaseModelNotFound",
    "BaseModelNotReady",
}
# Container waiting reasons that no amount of waiting fixes.
DEPLOY_ERROR_WAITING = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
}


# -- names and labels --------------------------------------------------------------------
def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(p for p in out.split("-") if p)


def isvc_name(trial_name: str, prefix: str = "autotune") -> str:
    """A DNS-1035 name (``[a-z]([-a-z0-9]*[a-z0-9])?``, ≤ 50 chars) for a trial.

    >>> isvc_name("Study_2026-11-29/trial-003")
    'autotune-study-2026-11-29-trial-003'
    >>> len(isvc_name("x" * 200)) <= 50
    True
    """
    prefix, slug = _slug(prefix), _slug(trial_name)
    if prefix and (slug == prefix or slug.startswith(prefix + "-")):
        prefix = ""  # study names often start with "autotune" already
    name = "-".join(p for p in (prefix, slug) if p) or "trial"
    if not name[0].isalpha():
        name = f"t-{name}"
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(trial_name.encode()).hexdigest()[:6]
        name = f"{name[: MAX_NAME - 7].rstrip('-')}-{digest}"
    return name


def label_value(text: str) -> str:
    """A valid label value: ≤ 63 chars of ``[A-Za-z0-9._-]``, alphanumeric at both ends.

    >>> label_value("my study/2026 11 29")
    'my-study-2026-11-29'
    """
    out = "".join(c if c.isalnum() or c in "._-" else "-" for c in text)[:63]
    return out.strip("._-")


def dns_name(text: str) -> str:
    """A DNS-1123 resource name for a model such as ``Llama-3.1-8B`` → ``llama-3-1-8b``."""
    return _slug(text.replace(".", "-"))[:253]


_PLAIN_KEY = re.compile(r"[A-Za-z][A-Za-z0-9._/-]*")


def _yaml_key(key: str) -> str:
    """A mapping key, bare when YAML reads it back as the same string."""
    key = str(key)
    plain = _PLAIN_KEY.fullmatch(key) and key.lower() not in (
        "y",
        "n",
        "yes",
        "no",
        "on",
        "off",
        "true",
        "false",
        "null",
    )
    return key if plain else json.dumps(key, ensure_ascii=False)


def _study_of(spec: LaunchSpec) -> str:
    study = getattr(spec, "study", None)
    if study:
        return str(study)
    head, sep, _ = spec.trial_name.rpartition("-trial-")
    return head if sep else spec.trial_name


# -- the Kubernetes API ------------------------------------------------------------------
@dataclass
class KubeClients:
    """The two API groups the launcher uses (``CustomObjectsApi``, ``CoreV1Api``)."""

    custom: Any
    core: Any

    @classmethod
    def connect(cls, context: str | None = None) -> KubeClients:
        """From the kubeconfig (``context`` or its current one), or the pod's service account."""
        from kubernetes import client, config

        if context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            api = config.new_client_from_config(context=context)
        else:
            conf = client.Configuration()
            config.load_incluster_config(client_configuration=conf)
            api = client.ApiClient(conf)
        return cls(custom=client.CustomObjectsApi(api), core=client.CoreV1Api(api))


def _api_status(e: Exception) -> int | None:
    return getattr(e, "status", None)


def api_message(e: Exception) -> str:
    body = getattr(e, "body", None)
    try:
        return json.loads(body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(body or e)


@dataclass
class Deployment:
    """One trial's InferenceService while it lives (``Endpoint.handle``)."""

    name: str
    namespace: str
    clients: KubeClients
    log_path: Path
    restarts: int = 0
    port_forward: subprocess.Popen | None = None
    pf_log: Any = None
    pod: str | None = None
    last_poll: float = float("-inf")
    exit_code: int | None = None
    created: bool = False  # only what this launcher created is deleted
    stopped: bool = False
    logs: dict[str, str] = field(default_factory=dict)


@dataclass
class OmeConfig(DeployConfig):
    _target_: str = "autotune.launchers.ome.OmeLauncher"
    name: str = "ome"
    namespace: str = "default"
    kube_context: str | None = None
    # ClusterBaseModel / ClusterServingRuntime (or namespaced) the InferenceService uses;
    # null = the model's name / OME's own choice.
    base_model: str | None = None
    serving_runtime: str | None = None
    # in_cluster: use status.url; port_forward: forward a local port to the engine pod.
    access: str = "port_forward"
    kubectl: str = "kubectl"
    # How long stop() waits for the InferenceService and its pods to be gone.
    delete_wait_s: float = 300.0
    engine_port: int = 8080
    name_prefix: str = "autotune"
    cpu: str | None = "8"
    memory: str | None = "64Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 1800.0
    # How often the InferenceService's status is read while it starts.
    poll_s: float = 5.0


class OmeLauncher(Launcher):
    """An InferenceService per trial; see the module doc for what ``start`` guarantees."""

    Config = OmeConfig
    export_as: ClassVar[dict[str, str]] = {"inferenceservice.yaml": "inferenceservice.yaml"}
    # start() waits for the InferenceService to be Ready: Ctrl-C must reach it.
    start_blocks = True
    leftover_kinds: ClassVar[tuple[str, ...]] = ("isvc", "process")
    name = "ome"

    def __init__(
        self,
        config: OmeConfig | None = None,
        *,
        clients: KubeClients | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        **overrides: Any,
    ) -> None:
        """``clients``, ``clock`` and ``sleep``: the cluster and time, for tests."""
        super().__init__(config, **overrides)
        if self.access not in ("port_forward", "in_cluster"):
            raise ValueError(f"deploy.access={self.access!r}: use port_forward or in_cluster")
        self._clients = clients
        self.clock, self.sleep = clock, sleep

    @classmethod
    def reap(cls) -> list[str]:
        return reap_services()

    @classmethod
    def preflight_checks(cls, cfg: Any) -> list[Any]:
        from autotune.doctor import targets

        return targets.ome(cfg)

    # -- what is launched -------------------------------------------------------------
    def args(self, spec: LaunchSpec) -> list[str]:
        """Runner args: fixed args, served name, then the trial's flags (last wins)."""
        args = [str(a) for a in spec.runtime.extra_args]
        if spec.runtime.served_name_arg:
            args += [spec.runtime.served_name_arg, spec.served_name]
        return args + to_argv(spec.params, spec.runtime.flags)

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        env = {k: str(v) for k, v in dict(spec.runtime.env or {}).items()}
        env.update(self.env)
        env.update(spec.env)
        for k in [k for k in env if is_secret_name(k)]:
            # A manifest is stored and shown in the clear: secrets belong in a Secret
            # referenced by the serving runtime (env valueFrom.secretKeyRef).
            log.warning("not putting %s into the InferenceService: use a Kubernetes Secret", k)
            env.pop(k)
        return env

    def values(self, spec: LaunchSpec) -> dict[str, Any]:
        """The template's variables."""
        study = _study_of(spec)
        labels = {
            **MANAGED_BY,
            "autotune.io/study": label_value(study),
            "autotune.io/trial": label_value(spec.trial_name),
        }
        resources: dict[str, Any] = {}
        if self.cpu:
            resources["cpu"] = str(self.cpu)
        if self.memory:
            resources["memory"] = str(self.memory)
        resources["nvidia.com/gpu"] = gpu_count(spec.params, spec.runtime.gpu_flag)
        return {
            "name": isvc_name(spec.trial_name, self.name_prefix),
            "namespace": self.namespace,
            "labels": {k: v for k, v in labels.items() if v},
            "annotations": {
                "autotune.io/study": study,
                "autotune.io/trial": spec.trial_name,
                "autotune.io/owner": owner_id(),
                "autotune.io/flags": json.dumps(spec.params, sort_keys=True),
            },
            "base_model": self.base_model or dns_name(spec.model.name),
            "runtime_name": self.serving_runtime,
            "args": self.args(spec),
            "env": self.environment(spec),
            "resources": resources,
            "node_selector": self.node_selector,
        }

    def manifest_text(self, spec: LaunchSpec) -> str:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        env.filters["q"] = lambda v: json.dumps(v, ensure_ascii=False)
        env.filters["k"] = _yaml_key
        return env.get_template("inferenceservice.yaml.j2").render(**self.values(spec))

    def manifest(self, spec: LaunchSpec) -> dict[str, Any]:
        """The InferenceService as the API receives it."""
        return yaml.safe_load(self.manifest_text(spec))

    def render(self, spec: LaunchSpec, port: int | None = None) -> dict[str, str]:
        """``inferenceservice.yaml`` (``kubectl apply -f`` ready); contacts no cluster."""
        return {"inferenceservice.yaml": self.manifest_text(spec)}

    # -- lifecycle ----------------------------------------------------------------------
    def clients(self) -> KubeClients:
        if self._clients is None:
            try:
                self._clients = KubeClients.connect(self.kube_context)
            except Exception as e:
                raise TrialFailure(
                    Failure.DEPLOY_ERROR, f"no Kubernetes cluster configured ({e})"
                ) from None
        return self._clients

    def start(self, spec: LaunchSpec) -> Endpoint:
        """Create the ISVC and block until it is Ready; see the module doc."""
        spec.workdir.mkdir(parents=True, exist_ok=True)
        body = self.manifest(spec)
        dep = Deployment(
            name=body["metadata"]["name"],
            namespace=self.namespace,
            clients=self.clients(),
            log_path=spec.workdir / "engine.log",
        )
        dep.log_path.touch()
        leftovers.record(
            "isvc", f"{dep.namespace}-{dep.name}", namespace=dep.namespace, name=dep.name,
            trial=spec.trial_name, context=self.kube_context,
        )  # fmt: skip
        try:
            self._create(dep, body)
            isvc = self._wait_ready(dep, spec)
            base_url = self._connect(dep, isvc, spec.workdir)
        except Exception:
            self._teardown(dep)
            raise
        except BaseException:  # Ctrl-C: delete, but do not make the user wait for it
            self._teardown(dep, wait=False)
            raise
        return Endpoint(
            base_url=base_url,
            model_name=spec.served_name,
            log_path=dep.log_path,
            handle=dep,
            info={"inferenceservice": dep.name, "namespace": dep.namespace, "pod": dep.pod,
                  "url": (isvc.get("status") or {}).get("url")},
        )  # fmt: skip

    def _create(self, dep: Deployment, body: dict[str, Any]) -> None:
        custom = dep.clients.custom
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, dep.namespace, PLURAL, body)
            dep.created = True
            log.info("created InferenceService %s/%s", dep.namespace, dep.name)
            return
        except Exception as e:
            if _api_status(e) != 409:
                # webhook rejections (unknown model, runtime mismatch), RBAC, missing CRDs
                raise TrialFailure(
                    Failure.DEPLOY_ERROR,
                    f"the cluster refused InferenceService {dep.name}: {api_message(e)}",
                ) from None
        old = self._get(dep) or {}
        owner = (old.get("metadata", {}).get("annotations") or {}).get("autotune.io/owner")
        if leftovers.owner_alive(owner):
            raise TrialFailure(
                Failure.DEPLOY_ERROR,
                f"InferenceService {dep.namespace}/{dep.name} already exists and may be in use",
            )
        log.warning("deleting InferenceService %s left by an earlier run", dep.name)
        self._delete(dep)
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, dep.namespace, PLURAL, body)
            dep.created = True
        except Exception as e:
            raise TrialFailure(
                Failure.DEPLOY_ERROR, f"could not create {dep.name}: {api_message(e)}"
            ) from None

    def _get(self, dep: Deployment) -> dict[str, Any] | None:
        try:
            return dep.clients.custom.get_namespaced_custom_object(
                GROUP, VERSION, dep.namespace, PLURAL, dep.name
            )
        except Exception as e:
            if _api_status(e) == 404:
                return None
            raise

    def _wait_ready(self, dep: Deployment, spec: LaunchSpec) -> dict[str, Any]:
        patterns = dict(spec.runtime.failure_patterns or {})
        t0 = self.clock()
        while True:
            isvc = self._get(dep)
            if isvc is None:
                raise TrialFailure(Failure.DEPLOY_ERROR, f"InferenceService {dep.name} disappeared")
            status = isvc.get("status") or {}
            if is_ready(status):
                self.fetch_logs(dep)
                log.info("InferenceService %s is Ready after %.0f s", dep.name, self.clock() - t0)
                return isvc
            found = model_failure(status) or self._pod_failure(dep) or self._event_failure(dep)
            if found:
                default, why = found
                raise self._failure(dep, patterns, default, why)
            if self.clock() - t0 > self.startup_timeout_s:
                why = f"not Ready after {self.startup_timeout_s:.0f} s; {describe(status)}"
                waiting = self._pod_waiting(dep)
                raise self._failure(dep, patterns, Failure.STARTUP_TIMEOUT, why + waiting)
            self.fetch_logs(dep)
            self.sleep(self.poll_s)

    def _failure(
        self, dep: Deployment, patterns: dict[str, Any], default: Failure, why: str
    ) -> TrialFailure:
        """A TrialFailure classified from the engine log when the log says more."""
        text = self.fetch_logs(dep)
        # A deploy error is the cluster's, whatever the (possibly stale) log says.
        failure = (
            default if default == Failure.DEPLOY_ERROR else failure_in(text, patterns, default)
        )
        tail = last_lines(text)
        return TrialFailure(
            failure,
            f"InferenceService {dep.namespace}/{dep.name}: {why} ({failure.value})"
            + (f":\n{tail}" if tail else ""),
        )

    def _pods(self, dep: Deployment) -> list[Any]:
        try:
            pods = dep.clients.core.list_namespaced_pod(
                dep.namespace, label_selector=f"ome.io/inferenceservice={dep.name},component=engine"
            ).items
        except Exception as e:
            log.debug("listing pods of %s: %s", dep.name, e)
            return []
        return sorted(pods, key=lambda p: str(p.metadata.creation_timestamp or ""))

    def _pod_failure(self, dep: Deployment) -> tuple[Failure, str] | None:
        for pod in self._pods(dep):
            st = _engine_status(pod)
            if st is None:
                continue
            waiting = st.state.waiting if st.state else None
            if waiting and waiting.reason in DEPLOY_ERROR_WAITING:
                return (
                    Failure.DEPLOY_ERROR,
                    f"pod {pod.metadata.name}: {waiting.reason}: {waiting.message}",
                )
            for term in (st.state.terminated if st.state else None, st.last_state.terminated if st.last_state else None):  # fmt: skip
                if term is None:
                    continue
                if term.reason == "OOMKilled":
                    return Failure.OOM, f"pod {pod.metadata.name} was OOMKilled (memory limit)"
                # A server never exits by itself; a restart would fail the same way.
                return Failure.CRASH, (
                    f"engine container exited with code {term.exit_code} ({term.reason})"
                )
        return None

    def _pod_waiting(self, dep: Deployment) -> str:
        """Why pods are still pending (e.g. no node with free GPUs), for a timeout message."""
        notes = []
        for pod in self._pods(dep):
            for c in pod.status.conditions or []:
                if c.status != "True" and c.message:
                    notes.append(f"pod {pod.metadata.name} {c.type}: {c.message}")
        return ("; " + "; ".join(notes)) if notes else ""

    def _event_failure(self, dep: Deployment) -> tuple[Failure, str] | None:
        try:
            events = dep.clients.core.list_namespaced_event(
                dep.namespace,
                field_selector=f"involvedObject.name={dep.name},involvedObject.kind=InferenceService",
            ).items
        except Exception as e:
            log.debug("listing events of %s: %s", dep.name, e)
            return None
        for ev in events:
            if ev.type == "Warning" and ev.reason in DEPLOY_ERROR_EVENTS:
                return Failure.DEPLOY_ERROR, f"{ev.reason}: {ev.message}"
        return None

    def fetch_logs(self, dep: Deployment) -> str:
        """The engine pods' logs (earlier restarts first) into ``log_path``; returns the text."""
        core = dep.clients.core
        for pod in self._pods(dep):
            name = pod.metadata.name
            st = _engine_status(pod)
            parts = []
            if st is not None and (st.restart_count or 0) > 0:
                with contextlib.suppress(Exception):
                    prev = core.read_namespaced_pod_log(
                        name, dep.namespace, container=ENGINE_CONTAINER, previous=True
                    )
                    parts.append(f"==> pod {name}, previous container <==\n{prev}")
            try:
                cur = core.read_namespaced_pod_log(name, dep.namespace, container=ENGINE_CONTAINER)
                parts.append(f"==> pod {name} <==\n{cur}")
            except Exception as e:  # not started yet: keep what we had
                log.debug("logs of %s: %s", name, e)
            if parts:
                dep.logs[name] = "".join(p if p.endswith("\n") else p + "\n" for p in parts)
        text = "".join(dep.logs.values())
        if text:
            dep.log_path.write_text(text)
        return text

    def _connect(self, dep: Deployment, isvc: dict[str, Any], workdir: Path) -> str:
        pods = [p for p in self._pods(dep) if p.status and p.status.phase == "Running"]
        dep.pod = pods[-1].metadata.name if pods else None
        st = _engine_status(pods[-1]) if pods else None
        dep.restarts = (st.restart_count or 0) if st else 0
        if self.access == "in_cluster":
            url = (isvc.get("status") or {}).get("url")
            return (
                url or f"http://{dep.name}.{dep.namespace}.svc.cluster.local:{self.engine_port}"
            ).rstrip("/")
        if dep.pod is None:
            raise TrialFailure(
                Failure.DEPLOY_ERROR, f"{dep.name} is Ready but has no running engine pod"
            )
        port = free_port("127.0.0.1")
        self._port_forward(dep, port, workdir)
        return f"http://127.0.0.1:{port}"

    def port_forward_argv(self, dep: Deployment, port: int) -> list[str]:
        argv = [
            self.kubectl,
            "port-forward",
            "--namespace",
            dep.namespace,
            "--address",
            "127.0.0.1",
        ]
        if self.kube_context:
            argv += ["--context", self.kube_context]
        return [*argv, f"pod/{dep.pod}", f"{port}:{self.engine_port}"]

    def _port_forward(
        self, dep: Deployment, port: int, workdir: Path, wait_s: float = 30.0
    ) -> None:
        """``kubectl port-forward`` in its own process group; returns once the port answers."""
        dep.pf_log = open(workdir / "port-forward.log", "ab")  # noqa: SIM115 - closed in stop
        try:
            dep.port_forward = subprocess.Popen(
                self.port_forward_argv(dep, port),
                stdin=subprocess.DEVNULL,
                stdout=dep.pf_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            raise TrialFailure(
                Failure.DEPLOY_ERROR,
                f"could not run {self.kubectl} port-forward ({e}): install kubectl or set "
                f"deploy.access=in_cluster when autotune runs inside the cluster",
            ) from None
        leftovers.record_process(dep.port_forward.pid, f"port-forward {dep.name}")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if dep.port_forward.poll() is not None:
                raise TrialFailure(
                    Failure.DEPLOY_ERROR,
                    f"kubectl port-forward exited with {dep.port_forward.returncode}: "
                    f"{(workdir / 'port-forward.log').read_text()[-2000:]}",
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                return
            time.sleep(0.1)
        raise TrialFailure(
            Failure.DEPLOY_ERROR, f"kubectl port-forward to {dep.pod} did not open port {port}"
        )

    def poll(self, endpoint: Endpoint) -> int | None:
        """None while the engine container runs unchanged; its exit code once it died.

        Asks the API at most every ``poll_s`` seconds and refreshes the log meanwhile.
        """
        dep: Deployment = endpoint.handle
        if dep.exit_code is not None:
            return dep.exit_code
        now = self.clock()
        if now - dep.last_poll < self.poll_s:
            return None
        dep.last_poll = now
        try:
            if self._get(dep) is None:
                dep.exit_code = -1
                return dep.exit_code
            pods = {p.metadata.name: p for p in self._pods(dep)}
        except Exception as e:
            log.warning("could not check %s: %s", dep.name, e)
            return None
        pod = pods.get(dep.pod) if dep.pod else None
        st = _engine_status(pod) if pod is not None else None
        code: int | None = None
        if dep.pod and pod is None:
            code = -1  # the pod is gone (evicted, node lost)
        elif st is not None:
            term = st.state.terminated if st.state else None
            last = st.last_state.terminated if st.last_state else None
            if term is not None:
                code = int(term.exit_code)
            elif (st.restart_count or 0) > dep.restarts:
                code = int(last.exit_code) if last is not None else -1
        self.fetch_logs(dep)
        if code is not None:
            dep.exit_code = code
        elif dep.port_forward is not None and dep.port_forward.poll() is not None:
            log.warning(
                "kubectl port-forward to %s exited; the benchmark will fail to connect", dep.pod
            )
        return code

    def stop(self, endpoint: Endpoint) -> None:
        """Save the logs, delete the ISVC and stop the port-forward. Never raises."""
        self._teardown(endpoint.handle)

    def _teardown(self, dep: Deployment | None, wait: bool = True) -> None:
        if dep is None or dep.stopped:
            return
        dep.stopped = True
        if dep.port_forward is not None:
            stop_process_group(dep.port_forward, self.stop_timeout_s)
            leftovers.forget_process(dep.port_forward.pid)
        if dep.pf_log is not None:
            with contextlib.suppress(OSError):
                dep.pf_log.close()
        if not dep.created:
            leftovers.forget("isvc", f"{dep.namespace}-{dep.name}")
            return
        try:
            self.fetch_logs(dep)
        except Exception as e:
            log.warning("could not save the engine log of %s: %s", dep.name, e)
        try:
            self._delete(dep, wait=wait)
        except Exception as e:
            log.error("could not delete InferenceService %s/%s: %s", dep.namespace, dep.name, e)
            return  # keep the registry entry: the next run's reap() retries
        leftovers.forget("isvc", f"{dep.namespace}-{dep.name}")

    def _delete(self, dep: Deployment, wait: bool = True) -> None:
        """Delete the ISVC and wait (≤ ``delete_wait_s``) until it and its pods are gone,
        so the next trial finds its GPUs free."""
        try:
            dep.clients.custom.delete_namespaced_custom_object(
                GROUP, VERSION, dep.namespace, PLURAL, dep.name, propagation_policy="Foreground"
            )
        except Exception as e:
            if _api_status(e) != 404:
                raise
        deadline = self.clock() + (self.delete_wait_s if wait else 0)
        while self.clock() < deadline:
            if self._get(dep) is None and not self._pods(dep):
                log.info("deleted InferenceService %s/%s", dep.namespace, dep.name)
                return
            self.sleep(min(self.poll_s, 2.0))
        log.warning(
            "%s/%s still terminating after %.0f s", dep.namespace, dep.name, self.delete_wait_s
        )


# -- status reading ----------------------------------------------------------------------
def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in status.get("conditions") or []}


def is_ready(status: dict[str, Any]) -> bool:
    """The ``Ready`` condition is True (IngressReady + EngineReady)."""
    return conditions(status).get("Ready", {}).get("status") == "True"


def model_failure(status: dict[str, Any]) -> tuple[Failure, str] | None:
    """A failure ``status.modelStatus`` reports, as (default class, message)."""
    ms = status.get("modelStatus") or {}
    transition = ms.get("transitionStatus")
    states = ms.get("modelRevisionStates") or {}
    info = ms.get("lastFailureInfo") or {}
    detail = ", ".join(
        f"{k}={info[k]}" for k in ("reason", "exitCode", "message") if info.get(k) not in (None, "")
    )
    if transition == "InvalidSpec":
        return Failure.DEPLOY_ERROR, f"InvalidSpec ({detail or 'no details'})"
    if info.get("reason") in DEPLOY_ERROR_REASONS:
        return Failure.DEPLOY_ERROR, f"{transition or 'failed'} ({detail})"
    if transition == "BlockedByFailedLoad" or states.get("targetModelState") == "FailedToLoad":
        return Failure.CRASH, f"{transition or 'FailedToLoad'} ({detail or 'no details'})"
    return None


def describe(status: dict[str, Any]) -> str:
    """One line of conditions for messages, e.g. ``EngineReady=False (MinimumReplicasUnavailable)``."""
    parts = [
        f"{t}={c.get('status')}" + (f" ({c.get('reason')})" if c.get("reason") else "")
        for t, c in conditions(status).items()
    ]
    return ", ".join(parts) or "no conditions yet"


def _engine_status(pod: Any) -> Any:
    for st in (pod.status.container_statuses or []) if pod.status else []:
        if st.name == ENGINE_CONTAINER:
            return st
    return None


def reap_services(clients: KubeClients | None = None) -> list[str]:
    """Delete InferenceServices whose tuner died before deleting them; return their names."""
    removed = []
    for path, entry in leftovers.orphans("isvc"):
        try:
            api = clients or KubeClients.connect(entry.get("context"))
            api.custom.delete_namespaced_custom_object(
                GROUP, VERSION, entry["namespace"], PLURAL, entry["name"]
            )
            removed.append(entry["name"])
        except Exception as e:
            if _api_status(e) != 404:
                log.warning("could not delete leftover %s: %s", entry["name"], e)
                continue
        log.warning("deleted InferenceService %s left by a killed tuner", entry["name"])
        path.unlink(missing_ok=True)
    return removed
