"""The project's rules for every workload, checked on rendered objects: non-root, read-only root
filesystem, no privilege escalation, all capabilities dropped, CPU and memory requests and
limits, and liveness + readiness probes on everything that serves."""

from __future__ import annotations

from collections.abc import Iterator

SERVING_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ClusterServingRuntime",
                 "ServingRuntime"}


def pod_specs(obj: dict) -> Iterator[tuple[str, dict]]:
    """(where, pod spec) of every pod template an object carries."""
    spec, kind = obj.get("spec") or {}, obj.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield "spec.template.spec", (spec.get("template") or {}).get("spec") or {}
    elif kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        yield "spec.jobTemplate.spec.template.spec", (job.get("template") or {}).get("spec") or {}
    elif kind in ("ClusterServingRuntime", "ServingRuntime"):
        yield "spec", spec   # containers only: the predictor's pod spec carries the rest


def _container_problems(where: str, container: dict, pod_non_root: bool,
                        needs_probes: bool) -> list[str]:
    problems = []
    security = container.get("securityContext") or {}
    if not (pod_non_root or security.get("runAsNonRoot")):
        problems.append(f"{where}: runAsNonRoot is not true (pod or container)")
    if security.get("runAsGroup") == 0:
        problems.append(f"{where}.securityContext.runAsGroup: must not be 0 (root's group)")
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}.securityContext.allowPrivilegeEscalation: must be false")
    if security.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}.securityContext.readOnlyRootFilesystem: must be true")
    if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
        problems.append(f"{where}.securityContext.capabilities.drop: must include ALL")
    problems += resource_problems(where, container.get("resources") or {})
    if needs_probes:
        for probe in ("livenessProbe", "readinessProbe"):
            if not container.get(probe):
                problems.append(f"{where}.{probe}: Required value (it serves)")
    return problems


def resource_problems(where: str, resources: dict) -> list[str]:
    return [f"{where}.resources.{bound}.{name}: Required value"
            for bound in ("requests", "limits") for name in ("cpu", "memory")
            if name not in (resources.get(bound) or {})]


def _predictors(obj: dict) -> Iterator[tuple[str, dict]]:
    spec = obj.get("spec") or {}
    if spec.get("predictor"):
        yield "spec.predictor", spec["predictor"]
    for index, canary in enumerate(spec.get("canary") or []):
        yield f"spec.canary[{index}].predictor", canary.get("predictor") or {}


def _inference_service_problems(obj: dict) -> list[str]:
    problems = []
    for where, predictor in _predictors(obj):
        if not (predictor.get("securityContext") or {}).get("runAsNonRoot"):
            problems.append(f"{where}.securityContext.runAsNonRoot: must be true")
        problems += resource_problems(f"{where}.model", (predictor.get("model") or {})
                                      .get("resources") or {})
    return problems


def workload_problems(obj: dict) -> list[str]:
    """Every rule an object breaks, one line each (empty: it follows them all)."""
    if obj.get("kind") == "InferenceService":
        return _inference_service_problems(obj)
    problems = []
    for where, pod in pod_specs(obj):
        pod_security = pod.get("securityContext") or {}
        pod_non_root = bool(pod_security.get("runAsNonRoot"))
        problems += [f"{where}.securityContext.{key}: must not be 0 (root's group)"
                     for key in ("runAsGroup", "fsGroup") if pod_security.get(key) == 0]
        for group in ("initContainers", "containers"):
            for index, container in enumerate(pod.get(group) or []):
                problems += _container_problems(
                    f"{where}.{group}[{index}]", container, pod_non_root,
                    needs_probes=group == "containers" and obj["kind"] in SERVING_KINDS)
    return problems
