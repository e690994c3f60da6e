"""NetworkPolicy checks on rendered objects: every namespace the manifests create denies all
ingress and egress by default; every policy, and every peer it names in a namespace we create,
selects a pod the manifests run; and every in-cluster URL a workload calls (MLflow, the sink, the
KFP API, object storage) is allowed both ways: egress from the caller, ingress to the callee."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from civicsense.deploy.policy import pod_specs

NAMESPACE_LABEL = "kubernetes.io/metadata.name"   # Kubernetes sets it on every namespace
# KServe v0.20.0 labels every predictor pod with these (components/predictor.go:498-511).
ISVC_LABEL, COMPONENT_LABEL = "serving.kserve.io/inferenceservice", "component"
# Every pod of a KFP v2 run (kubeflow/pipelines 2.17.0 backend/src/v2/compiler/argocompiler/
# argo.go:167-173); the pipeline's steps read their settings from this ConfigMap.
KFP_STEP_LABELS, PIPELINE_CONFIG = {"pipelines.kubeflow.org/v2_component": "true"}, (
    "civicsense-config")
LOGGER = "the payload logger"   # spec.predictor.logger.url
# The calls each workload makes, by the setting that holds the URL. None: every pod configured
# with it calls it. The KFP host only for the monitor: the sink shares its ConfigMap, starts no
# runs, and has no path to KFP.
CALLS: tuple[tuple[str | None, str], ...] = (
    (None, "MLFLOW_TRACKING_URI"), (None, "STORAGE_EMULATOR_HOST"),
    (None, "CIVICSENSE_FEEDBACK_FORWARD_URL"), (None, LOGGER),
    ("CronJob/civicsense-monitor", "CIVICSENSE_KFP_HOST"))
URL = re.compile(r"(https?)://([a-z0-9.-]+)(?::(\d+))?(?:/|$)")


@dataclass(frozen=True)
class Pod:
    """A pod the manifests make run: who (Kind/name), where, its labels, its container ports
    (number → name) and its configured settings (env, resolved from ConfigMaps)."""

    who: str
    namespace: str
    labels: dict[str, str]
    ports: dict[int, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def _meta(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "default", meta.get("name") or ""


def _config_maps(objects: list[dict]) -> dict[tuple[str, str], dict[str, str]]:
    return {_meta(o): o.get("data") or {} for o in objects if o.get("kind") == "ConfigMap"}


def configured_env(containers: list[dict], namespace: str, maps: dict) -> dict[str, str]:
    """Literal env, `configMapKeyRef` values and `envFrom` ConfigMaps (Secrets hold no URLs)."""
    env: dict[str, str] = {}
    for container in containers:
        for source in container.get("envFrom") or []:
            data = maps.get((namespace, (source.get("configMapRef") or {}).get("name")), {})
            env.update({(source.get("prefix") or "") + k: v for k, v in data.items()})
        for item in container.get("env") or []:
            ref = (item.get("valueFrom") or {}).get("configMapKeyRef")
            if "value" in item:
                env[item["name"]] = item["value"]
            elif ref:
                env[item["name"]] = maps.get((namespace, ref.get("name")), {}).get(ref.get("key"))
    return {k: v for k, v in env.items() if isinstance(v, str)}


def _ports(containers: list[dict]) -> dict[int, str]:
    return {p["containerPort"]: p.get("name", "") for c in containers for p in c.get("ports") or []}


def _template_labels(obj: dict) -> dict[str, str]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}


def pods(objects: list[dict]) -> list[Pod]:
    """Every pod the objects make: workloads' templates, InferenceService predictors (labels as
    KServe sets them, ports of their runtime), and one step of the training pipeline where its
    ConfigMap is (KFP runs the steps)."""
    maps, found = _config_maps(objects), []
    runtimes = {o["metadata"]["name"]: o.get("spec") or {} for o in objects
                if o.get("kind") in ("ClusterServingRuntime", "ServingRuntime")}
    for obj in objects:
        (namespace, name), kind = _meta(obj), obj.get("kind")
        if kind == "InferenceService":
            predictor = (obj.get("spec") or {}).get("predictor") or {}
            model = predictor.get("model") or {}
            runtime = runtimes.get(model.get("runtime"), {}).get("containers") or []
            env = configured_env([*runtime, model], namespace, maps)
            if (predictor.get("logger") or {}).get("url"):
                env[LOGGER] = predictor["logger"]["url"]
            labels = {**((obj.get("metadata") or {}).get("labels") or {}),
                      **(predictor.get("labels") or {}),
                      ISVC_LABEL: name, COMPONENT_LABEL: "predictor"}
            found.append(Pod(f"{kind}/{name}", namespace, labels, _ports(runtime), env))
        elif kind not in ("ClusterServingRuntime", "ServingRuntime"):
            for _, spec in pod_specs(obj):
                containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
                found.append(Pod(f"{kind}/{name}", namespace, _template_labels(obj),
                                 _ports(containers), configured_env(containers, namespace, maps)))
    for (namespace, name), data in maps.items():
        if name == PIPELINE_CONFIG:
            found.append(Pod("KFP pipeline step", namespace, dict(KFP_STEP_LABELS), {},
                             {k: v for k, v in data.items() if isinstance(v, str)}))
    return found


def selects(selector: dict | None, labels: dict[str, str]) -> bool:
    """A LabelSelector against labels: matchLabels and every matchExpression ({} selects all)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if not {"In": present and labels[key] in values,
                "NotIn": not present or labels[key] not in values,
                "Exists": present, "DoesNotExist": not present}.get(op, False):
            return False
    return True


def _policies(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o.get("kind") == "NetworkPolicy"]


def _types(policy: dict) -> set[str]:
    spec = policy.get("spec") or {}
    return set(spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])])


def _peer_selects(peer: dict, policy_namespace: str, pod: Pod) -> bool:
    """ipBlock never counts for a pod: whether it matches pod addresses is up to the plugin."""
    if "ipBlock" in peer:
        return False
    namespaces = peer.get("namespaceSelector")
    in_namespace = (pod.namespace == policy_namespace if namespaces is None
                    else selects(namespaces, {NAMESPACE_LABEL: pod.namespace}))
    return in_namespace and ("podSelector" not in peer or selects(peer["podSelector"], pod.labels))


def _port_matches(rule: dict, port: int, pod: Pod) -> bool:
    for allowed in rule.get("ports") or [{}]:
        if allowed.get("protocol", "TCP") != "TCP":
            continue
        wanted = allowed.get("port")
        if wanted is None or wanted == port or (isinstance(wanted, str) and wanted == pod.ports.get(
                port)) or (isinstance(wanted, int) and wanted <= port <= allowed.get("endPort", 0)):
            return True
    return False


def allowed(objects: list[dict], source: Pod, target: Pod, port: int) -> list[str]:
    """What the policies refuse on source → target:port (TCP): [] when both ends allow it."""
    refused = []
    for direction, own, other, peers in (("Egress", source, target, "to"),
                                         ("Ingress", target, source, "from")):
        applying = [p for p in _policies(objects) if _meta(p)[0] == own.namespace
                    and direction in _types(p) and selects(p["spec"].get("podSelector"),
                                                           own.labels)]
        if applying and not any(
                _port_matches(rule, port, target) and (not rule.get(peers) or any(
                    _peer_selects(peer, _meta(policy)[0], other) for peer in rule[peers]))
                for policy in applying for rule in policy["spec"].get(direction.lower()) or []):
            refused.append(f"{direction.lower()} of {own.who}")
    return refused


def default_deny_problems(objects: list[dict]) -> list[str]:
    """Each namespace a Namespace object creates needs, for ingress and for egress, a policy
    selecting every pod with that policy type and no rule of it: the rest are exceptions."""
    problems = []
    for namespace in sorted(_meta(o)[1] for o in objects if o.get("kind") == "Namespace"):
        denied = set()
        for policy in _policies(objects):
            spec = policy.get("spec") or {}
            everyone = not any((spec.get("podSelector") or {}).values())
            if _meta(policy)[0] == namespace and everyone:
                denied |= {t for t in _types(policy) if not spec.get(t.lower())}
        for direction in sorted({"Ingress", "Egress"} - denied):
            problems.append(f"namespace {namespace}: no default-deny NetworkPolicy for "
                            f"{direction.lower()} (podSelector {{}}, policyTypes [Ingress, "
                            "Egress], no rules)")
    return problems


def selector_problems(objects: list[dict]) -> list[str]:
    """A policy, or a peer in a namespace we create, that selects no pod: a typo in a label
    silently allows or denies nothing."""
    created = {_meta(o)[1] for o in objects if o.get("kind") == "Namespace"}
    everyone, problems = pods(objects), []
    for policy in _policies(objects):
        namespace, name = _meta(policy)
        spec = policy.get("spec") or {}
        if namespace in created and not any(p.namespace == namespace and selects(
                spec.get("podSelector"), p.labels) for p in everyone):
            problems.append(f"NetworkPolicy {namespace}/{name}: podSelector selects no pod")
        for direction, peers in (("ingress", "from"), ("egress", "to")):
            for rule in spec.get(direction) or []:
                for peer in rule.get(peers) or []:
                    names = ((peer.get("namespaceSelector") or {}).get("matchLabels") or {})
                    where = names.get(NAMESPACE_LABEL, namespace if "namespaceSelector" not in
                                      peer else None)
                    if "podSelector" in peer and (where in created or where == namespace) and \
                            not any(_peer_selects(peer, namespace, p) for p in everyone):
                        problems.append(f"NetworkPolicy {namespace}/{name}: {direction} peer "
                                        f"{peer['podSelector']} selects no pod in {where}")
    return problems


def _service(objects: list[dict], host: str, namespace: str) -> tuple[str, str, dict | None]:
    """(name, namespace, the Service object or None) an in-cluster host names: `svc`,
    `svc.ns`, `svc.ns.svc[.cluster.local]`; ("", "", None) for any other host."""
    parts = host.split(".")
    service, namespace = parts[0], parts[1] if len(parts) > 1 else namespace
    found = next((o for o in objects if o.get("kind") == "Service"
                  and _meta(o) == (namespace, service)), None)
    cluster = host.endswith((".svc", ".svc.cluster.local")) or (len(parts) <= 2 and found)
    return (service, namespace, found) if cluster else ("", "", None)


def _calls(everyone: list[Pod]) -> Iterator[tuple[Pod, str, str]]:
    for pod in everyone:
        for who, key in CALLS:
            if (who is None or who == pod.who) and key in pod.env:
                yield pod, key, pod.env[key]


def _egress_to_namespace(objects: list[dict], source: Pod, namespace: str, port: int) -> bool:
    """The source may send to some pod in `namespace` on `port`: it is not isolated for egress,
    or one of its egress rules names that namespace and port (the pods there are not ours)."""
    applying = [p for p in _policies(objects) if _meta(p)[0] == source.namespace
                and "Egress" in _types(p) and selects(p["spec"].get("podSelector"), source.labels)]

    def names(peer: dict, policy_namespace: str) -> bool:
        if "ipBlock" in peer:
            return False
        if "namespaceSelector" not in peer:
            return namespace == policy_namespace
        return selects(peer["namespaceSelector"], {NAMESPACE_LABEL: namespace})

    return not applying or any(
        _port_matches(rule, port, Pod("", namespace, {})) and (
            not rule.get("to") or any(names(peer, _meta(policy)[0]) for peer in rule["to"]))
        for policy in applying for rule in policy["spec"].get("egress") or [])


def flow_problems(objects: list[dict]) -> list[str]:
    """Each call in CALLS to an in-cluster URL: its Service, the Service's port and pods, and the
    policies at both ends. A Service outside the objects (the KFP API in `kubeflow`) is checked
    on the caller's side only, its port taken as the pods' port."""
    everyone, problems = pods(objects), []
    created = {_meta(o)[1] for o in objects if o.get("kind") == "Namespace"}
    for source, key, url in _calls(everyone):
        match = URL.match(url)
        service, namespace, obj = _service(objects, match[2], source.namespace) if match else (
            "", "", None)
        if not service:
            continue   # not a cluster address (gs://, a cloud API): NetworkPolicy cannot name it
        port = int(match[3] or (443 if match[1] == "https" else 80))
        what = f"{source.who} → {url} ({key})"
        if obj is None:
            if namespace in created:
                problems.append(f"{what}: no Service {namespace}/{service}")
            elif not _egress_to_namespace(objects, source, namespace, port):
                problems.append(f"{what}: refused by the NetworkPolicies (egress of "
                                f"{source.who} to {namespace}, port {port})")
            continue
        target_port = next((e.get("targetPort", port) for e in obj["spec"].get("ports") or []
                            if e.get("port") == port), None)
        selector = obj["spec"].get("selector") or {}
        targets = [p for p in everyone if selector and p.namespace == namespace
                   and selects({"matchLabels": selector}, p.labels)]
        if target_port is None or not targets:
            problems.append(f"{what}: Service {namespace}/{service} "
                            + (f"has no port {port}" if target_port is None else "selects no pod"))
        for target in targets if target_port is not None else []:
            number = (target_port if isinstance(target_port, int) else
                      next((n for n, name in target.ports.items() if name == target_port), None))
            if number is None:
                problems.append(f"{what}: {target.who} has no port {target_port}")
            elif refused := allowed(objects, source, target, number):
                problems.append(f"{what}: refused by the NetworkPolicies ({', '.join(refused)}"
                                f", port {number})")
    return problems


def network_problems(objects: list[dict]) -> list[str]:
    """Everything above, one line per problem."""
    return [*default_deny_problems(objects), *selector_problems(objects),
            *flow_problems(objects)]
