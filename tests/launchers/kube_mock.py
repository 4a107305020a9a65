"""MOCK of the Kubernetes API server for the ome launcher's tests.

A real cluster (OME, GPUs) is a boundary this machine cannot reach, so the tests
script what the API would answer instead. Every call is checked against the
signature of the real ``kubernetes`` client method of the same name, so a call
the real client would reject fails here too; pods and events are the client's own
model classes.

    cluster = MockCluster(states=[status_progress(), status_ready()])
    launcher = OmeLauncher(clients=cluster.clients(), ...)
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException


def _check(real: Any, *args: Any, **kwargs: Any) -> None:
    inspect.signature(real).bind(None, *args, **kwargs)


def api_error(status: int, message: str) -> ApiException:
    e = ApiException(status=status, reason=message)
    e.body = json.dumps({"kind": "Status", "message": message, "code": status})
    return e


# -- statuses as OME writes them ----------------------------------------------------------
def status_progress() -> dict[str, Any]:
    return {
        "conditions": [
            {"type": "IngressReady", "status": "True", "reason": "IngressDisabled"},
            {"type": "EngineReady", "status": "False", "reason": "MinimumReplicasUnavailable"},
            {"type": "Ready", "status": "False", "reason": "MinimumReplicasUnavailable"},
        ],
        "modelStatus": {
            "transitionStatus": "InProgress",
            "modelRevisionStates": {"activeModelState": "Pending", "targetModelState": "Loading"},
        },
    }


def status_ready(name: str = "x", ns: str = "bench") -> dict[str, Any]:
    return {
        "url": f"http://{name}.{ns}.svc.cluster.local:8080",
        "conditions": [
            {"type": "IngressReady", "status": "True", "reason": "IngressDisabled"},
            {"type": "EngineReady", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
        "modelStatus": {
            "transitionStatus": "UpToDate",
            "modelRevisionStates": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
        },
    }


def status_failed_load(message: str = "", exit_code: int = 1) -> dict[str, Any]:
    return {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "MinimumReplicasUnavailable"}
        ],
        "modelStatus": {
            "transitionStatus": "BlockedByFailedLoad",
            "modelRevisionStates": {"activeModelState": "", "targetModelState": "FailedToLoad"},
            "lastFailureInfo": {
                "reason": "ModelLoadFailed",
                "message": message,
                "exitCode": exit_code,
            },
        },
    }


# -- pods -----------------------------------------------------------------------------
def pod(
    name: str,
    *,
    phase: str = "Running",
    running: bool = True,
    waiting: str | None = None,
    terminated: tuple[int, str] | None = None,
    last_terminated: tuple[int, str] | None = None,
    restarts: int = 0,
    conditions: list[tuple[str, str, str]] | None = None,
) -> k8s.V1Pod:
    state = k8s.V1ContainerState(
        running=k8s.V1ContainerStateRunning() if running and not (waiting or terminated) else None,
        waiting=k8s.V1ContainerStateWaiting(reason=waiting, message=f"{waiting} details")
        if waiting
        else None,
        terminated=k8s.V1ContainerStateTerminated(exit_code=terminated[0], reason=terminated[1])
        if terminated
        else None,
    )
    last = k8s.V1ContainerState(
        terminated=k8s.V1ContainerStateTerminated(
            exit_code=last_terminated[0], reason=last_terminated[1]
        )
        if last_terminated
        else None
    )
    status = k8s.V1ContainerStatus(
        name="ome-container",
        image="lmsysorg/sglang:v0.5.5.post3-cu129-amd64",
        image_id="",
        ready=running and not (waiting or terminated),
        restart_count=restarts,
        state=state,
        last_state=last,
    )
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, creation_timestamp="2026-01-01T00:00:00Z"),
        status=k8s.V1PodStatus(
            phase=phase,
            container_statuses=[status],
            conditions=[
                k8s.V1PodCondition(type=t, status=s, message=m) for t, s, m in conditions or []
            ],
        ),
    )


@dataclass
class MockCluster:
    """What the API answers, step by step: each ``get`` of the ISVC advances one step.

    ``states[i]`` is the ISVC status at step i (the last one repeats); ``pods[i]`` and
    ``logs[i]`` likewise (pods: list of V1Pod; logs: pod name -> current log text).
    """

    states: list[dict[str, Any]]
    pods: list[list[k8s.V1Pod]] = field(default_factory=list)
    logs: list[dict[str, str]] = field(default_factory=list)
    previous_logs: dict[str, str] = field(default_factory=dict)
    events: list[k8s.CoreV1Event] = field(default_factory=list)
    create_error: ApiException | None = None
    delete_error: ApiException | None = None
    existing: dict[str, Any] | None = None  # an ISVC of the same name already there
    # What the doctor's checks read (autotune/doctor/ome.py): cluster-scoped objects by
    # (plural, name) — CRDs under "customresourcedefinitions" —, namespaced OME objects
    # by (plural, namespace, name), nodes, secrets by (namespace, name), and the
    # (verb, resource[/subresource]) pairs a SelfSubjectAccessReview denies.
    cluster_objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    namespaced_objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    nodes: list[k8s.V1Node] = field(default_factory=list)
    secrets: dict[tuple[str, str], k8s.V1Secret] = field(default_factory=dict)
    denied: set[tuple[str, str]] = field(default_factory=set)
    api_error: ApiException | None = None  # every discovery call fails with it
    calls: list[tuple[str, tuple, dict]] = field(default_factory=list)
    step: int = -1
    created: dict[str, Any] | None = None
    deleted: bool = False

    def clients(self):
        from autotune.launchers.ome import KubeClients

        return KubeClients(custom=_Custom(self), core=_Core(self))

    def doctor_apis(self):
        from autotune.doctor.ome import KubeApis

        return KubeApis(
            custom=_Custom(self), core=_Core(self), authz=_Authz(self), where="https://mock:6443"
        )

    def _at(self, seq: list, default: Any) -> Any:
        if not seq:
            return default
        return seq[min(max(self.step, 0), len(seq) - 1)]

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


class _Custom:
    def __init__(self, cluster: MockCluster) -> None:
        self.c = cluster

    def create_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict:
        _check(k8s.CustomObjectsApi.create_namespaced_custom_object, *args, **kwargs)
        self.c.calls.append(("create", args, kwargs))
        if self.c.create_error is not None:
            raise self.c.create_error
        if self.c.existing is not None and not self.c.deleted:
            raise api_error(409, "already exists")
        self.c.created, self.c.deleted, self.c.step = args[4], False, -1
        return args[4]

    def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict:
        _check(k8s.CustomObjectsApi.get_namespaced_custom_object, *args, **kwargs)
        self.c.calls.append(("get", args, kwargs))
        if args[3] != "inferenceservices":
            key = (args[3], args[2], args[4])
            if key not in self.c.namespaced_objects:
                raise api_error(404, f"{args[3]} {args[4]} not found")
            return self.c.namespaced_objects[key]
        if self.c.created is None:
            if self.c.existing is not None and not self.c.deleted:
                return self.c.existing
            raise api_error(404, "not found")
        if self.c.deleted:
            raise api_error(404, "not found")
        self.c.step += 1
        return {**self.c.created, "status": self.c._at(self.c.states, {})}

    def get_cluster_custom_object(self, *args: Any, **kwargs: Any) -> dict:
        _check(k8s.CustomObjectsApi.get_cluster_custom_object, *args, **kwargs)
        self.c.calls.append(("get_cluster", args, kwargs))
        key = (args[2], args[3])
        if key not in self.c.cluster_objects:
            raise api_error(404, f"{args[2]} {args[3]} not found")
        return self.c.cluster_objects[key]

    def delete_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict:
        _check(k8s.CustomObjectsApi.delete_namespaced_custom_object, *args, **kwargs)
        self.c.calls.append(("delete", args, kwargs))
        if self.c.delete_error is not None:
            raise self.c.delete_error
        if self.c.deleted or (self.c.created is None and self.c.existing is None):
            raise api_error(404, "not found")
        self.c.deleted = True
        return {}


class _Core:
    def __init__(self, cluster: MockCluster) -> None:
        self.c = cluster

    def list_namespaced_pod(self, *args: Any, **kwargs: Any) -> k8s.V1PodList:
        _check(k8s.CoreV1Api.list_namespaced_pod, *args, **kwargs)
        self.c.calls.append(("list_pods", args, kwargs))
        items = [] if self.c.deleted or self.c.created is None else self.c._at(self.c.pods, [])
        return k8s.V1PodList(items=items)

    def read_namespaced_pod_log(self, *args: Any, **kwargs: Any) -> str:
        _check(k8s.CoreV1Api.read_namespaced_pod_log, *args, **kwargs)
        self.c.calls.append(("read_log", args, kwargs))
        name = args[0]
        if kwargs.get("previous"):
            if name in self.c.previous_logs:
                return self.c.previous_logs[name]
            raise api_error(400, "previous terminated container not found")
        logs = self.c._at(self.c.logs, {})
        if name not in logs:
            raise api_error(400, f'container "ome-container" in pod "{name}" is waiting to start')
        return logs[name]

    def get_api_resources(self, *args: Any, **kwargs: Any) -> k8s.V1APIResourceList:
        _check(k8s.CoreV1Api.get_api_resources, *args, **kwargs)
        self.c.calls.append(("api_resources", args, kwargs))
        if self.c.api_error is not None:
            raise self.c.api_error
        return k8s.V1APIResourceList(group_version="v1", resources=[])

    def list_node(self, *args: Any, **kwargs: Any) -> k8s.V1NodeList:
        _check(k8s.CoreV1Api.list_node, *args, **kwargs)
        self.c.calls.append(("list_nodes", args, kwargs))
        return k8s.V1NodeList(items=list(self.c.nodes))

    def read_namespaced_secret(self, *args: Any, **kwargs: Any) -> k8s.V1Secret:
        _check(k8s.CoreV1Api.read_namespaced_secret, *args, **kwargs)
        self.c.calls.append(("read_secret", args, kwargs))
        key = (args[1], args[0])
        if key not in self.c.secrets:
            raise api_error(404, f'secrets "{args[0]}" not found')
        return self.c.secrets[key]

    def list_namespaced_event(self, *args: Any, **kwargs: Any) -> k8s.CoreV1EventList:
        _check(k8s.CoreV1Api.list_namespaced_event, *args, **kwargs)
        self.c.calls.append(("list_events", args, kwargs))
        return k8s.CoreV1EventList(items=list(self.c.events))


def event(reason: str, message: str, kind: str = "Warning") -> k8s.CoreV1Event:
    return k8s.CoreV1Event(
        metadata=k8s.V1ObjectMeta(name=f"ev-{reason.lower()}"),
        involved_object=k8s.V1ObjectReference(kind="InferenceService", name="x"),
        reason=reason,
        message=message,
        type=kind,
    )


class _Authz:
    def __init__(self, cluster: MockCluster) -> None:
        self.c = cluster

    def create_self_subject_access_review(self, *args: Any, **kwargs: Any):
        _check(k8s.AuthorizationV1Api.create_self_subject_access_review, *args, **kwargs)
        self.c.calls.append(("access_review", args, kwargs))
        attrs = args[0].spec.resource_attributes
        what = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
        allowed = (attrs.verb, what) not in self.c.denied
        return k8s.V1SelfSubjectAccessReview(
            spec=args[0].spec, status=k8s.V1SubjectAccessReviewStatus(allowed=allowed)
        )


def node(name: str, gpus: int, labels: dict[str, str] | None = None, cordoned: bool = False):
    """A node as ``list_node`` returns it (allocatable nvidia.com/gpu from the device plugin)."""
    return k8s.V1Node(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels or {}),
        spec=k8s.V1NodeSpec(unschedulable=cordoned or None),
        status=k8s.V1NodeStatus(
            allocatable={"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": str(gpus)}
        ),
    )
