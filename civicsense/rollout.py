"""Canary rollout of the registered model on the KServe InferenceService, with the MLflow aliases
moved in step: promotion and alias never disagree.

Plain functions build the JSON merge patches; `canary`, `promote` and `rollback` apply them
through an injectable `Cluster` (kubectl by default) and move aliases through an MlflowClient.
Serverless (Knative) mode uses `spec.predictor.canaryTrafficPercent`; the `spec.canary` form of
KServe >= 0.20 Standard mode is built by the `standard_*` functions (see kserve/README.md).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from civicsense.registry import CHALLENGER, CHAMPION
from civicsense.settings import Settings

PREVIOUS = "previous"
RESOURCE = "inferenceservice.serving.kserve.io"
VERSION_ENV, RUN_ENV = "CIVICSENSE_MODEL_VERSION", "CIVICSENSE_MODEL_RUN_ID"
# Schemes KServe's storage initializer can fetch; a file:// URI means a laptop registry.
CLUSTER_SCHEMES = ("gs://", "s3://", "pvc://", "https://", "hf://", "oci://")


class RolloutError(RuntimeError):
    """A rollout step that could not be done; the message says what state things are in."""


# ---------------------------------------------------------------- patches (pure)


def version_env(version: str, run_id: str) -> list[dict[str, str]]:
    """Env the runtime reads to report which registered version a directory model is."""
    return [{"name": VERSION_ENV, "value": str(version)}, {"name": RUN_ENV, "value": run_id}]


def canary_patch(storage_uri: str, version: str, run_id: str, percent: int) -> dict:
    """Serverless: a new predictor revision on `storage_uri` taking `percent` of traffic."""
    if not 0 < percent < 100:
        raise RolloutError(f"--percent must be between 1 and 99, not {percent}")
    return {"spec": {"predictor": {"canaryTrafficPercent": percent, "model": {
        "storageUri": storage_uri, "env": version_env(version, run_id)}}}}


def promote_patch() -> dict:
    """Serverless: drop canaryTrafficPercent, so the latest revision takes all traffic."""
    return {"spec": {"predictor": {"canaryTrafficPercent": None}}}


def rollback_patch() -> dict:
    """Serverless: 0% to the latest revision, all traffic back to the previous rolled-out one."""
    return {"spec": {"predictor": {"canaryTrafficPercent": 0}}}


def restore_percent_patch(percent: int | None) -> dict:
    """The inverse of promote/rollback: canaryTrafficPercent back to what it was."""
    return {"spec": {"predictor": {"canaryTrafficPercent": percent}}}


def standard_canary_patch(model_spec: dict, storage_uri: str, version: str, run_id: str,
                          percent: int, name: str = CHALLENGER) -> dict:
    """Standard mode (KServe >= 0.20): a named canary predictor beside the main one. The
    canary's model spec is the main one's with the challenger's storageUri and env."""
    model = {**model_spec, "storageUri": storage_uri, "env": version_env(version, run_id)}
    return {"spec": {"canary": [{"trafficPercent": percent,
                                 "predictor": {"name": name, "model": model}}]}}


def standard_promote_patch(canary_predictor: dict) -> dict:
    """Standard mode: the canary becomes the main predictor (same name: no restart)."""
    return {"spec": {"predictor": canary_predictor, "canary": None}}


def standard_rollback_patch() -> dict:
    """Standard mode: remove the canary; the main predictor keeps all traffic."""
    return {"spec": {"canary": None}}


def kubectl_command(name: str, namespace: str, patch: dict, context: str | None = None) -> str:
    """The same patch as one kubectl command line, for operators and for --dry-run."""
    ctx = f" --context {context}" if context else ""
    return (f"kubectl{ctx} -n {namespace} patch {RESOURCE} {name} --type merge "
            f"-p '{json.dumps(patch, separators=(',', ':'))}'")


# ---------------------------------------------------------------- the cluster (injectable)


class Cluster(Protocol):
    def get(self, name: str, namespace: str) -> dict: ...

    def patch(self, name: str, namespace: str, patch: dict) -> dict: ...


@dataclass
class KubectlCluster:
    """The InferenceService through kubectl (whatever kubeconfig and context it uses)."""

    context: str | None = None
    kubectl: str = "kubectl"
    timeout: float = 60.0

    def _run(self, *args: str) -> dict:
        command = [self.kubectl, *(["--context", self.context] if self.context else []), *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise RolloutError(f"could not run {' '.join(command[:4])} …: {error}") from None
        if done.returncode != 0:
            raise RolloutError(f"kubectl failed ({done.returncode}): {done.stderr.strip()}")
        return json.loads(done.stdout or "{}")

    def get(self, name: str, namespace: str) -> dict:
        return self._run("-n", namespace, "get", RESOURCE, name, "-o", "json")

    def patch(self, name: str, namespace: str, patch: dict) -> dict:
        return self._run("-n", namespace, "patch", RESOURCE, name, "--type", "merge", "-p",
                         json.dumps(patch), "-o", "json")


# ---------------------------------------------------------------- registry helpers


@dataclass(frozen=True)
class Version:
    number: str
    run_id: str
    storage_uri: str


def registry_client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def aliased(client: MlflowClient, name: str, alias: str) -> Version | None:
    """The version an alias points to, with the storageUri a cluster would load it from."""
    try:
        found = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    uri = client.get_model_version_download_uri(name, found.version)
    return Version(str(found.version), str(found.run_id or "none"), uri)


def cluster_uri(version: Version, alias: str) -> str:
    if not version.storage_uri.startswith(CLUSTER_SCHEMES):
        raise RolloutError(f"{alias} version {version.number} lives at {version.storage_uri}, "
                           "which a cluster cannot read: log models to gs:// (a remote MLflow "
                           "artifact store) before rolling them out")
    return version.storage_uri


def alias_snapshot(client: MlflowClient, name: str) -> dict[str, str | None]:
    out = {}
    for alias in (CHAMPION, CHALLENGER, PREVIOUS):
        found = aliased_number(client, name, alias)
        out[alias] = found
    return out


def aliased_number(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def apply_aliases(client: MlflowClient, name: str, target: dict[str, str | None]) -> None:
    """Set (or, for None, delete) each alias, in order."""
    for alias, number in target.items():
        if number is None:
            if aliased_number(client, name, alias) is not None:
                client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, number)


# ---------------------------------------------------------------- the three verbs


def _context(settings: Settings, cluster: Cluster | None, client: MlflowClient | None):
    return (cluster or KubectlCluster(settings.k8s_context),
            client or registry_client(settings), settings.model_name, settings.k8s_namespace)


def _plan(verb: str, name: str, namespace: str, patch: dict, settings: Settings, **extra) -> dict:
    return {"verb": verb, "inferenceservice": name, "namespace": namespace,
            "patch_type": "merge", "patch": patch,
            "kubectl": kubectl_command(name, namespace, patch, settings.k8s_context), **extra}


def predictor_state(isvc: dict) -> tuple[str | None, int | None]:
    """(storageUri, canaryTrafficPercent) of the InferenceService's predictor."""
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    return (predictor.get("model") or {}).get("storageUri"), predictor.get("canaryTrafficPercent")


def canary(settings: Settings, percent: int = 10, dry_run: bool = False,
           cluster: Cluster | None = None, client: MlflowClient | None = None) -> dict:
    """Point the InferenceService at the challenger's artifacts with `percent` of traffic."""
    cluster, client, name, namespace = _context(settings, cluster, client)
    challenger = aliased(client, name, CHALLENGER)
    if challenger is None:
        raise RolloutError(f"{name} has no '{CHALLENGER}' alias: nothing to roll out")
    champion = aliased(client, name, CHAMPION)
    if champion is not None and champion.number == challenger.number:
        raise RolloutError(f"the challenger (version {challenger.number}) is already champion")
    patch = canary_patch(cluster_uri(challenger, CHALLENGER), challenger.number,
                         challenger.run_id, percent)
    plan = _plan("canary", name, namespace, patch, settings, challenger=challenger.number,
                 champion=champion.number if champion else None, alias_moves={})
    if not dry_run:
        cluster.patch(name, namespace, patch)
    return {**plan, "applied": not dry_run}


def promote(settings: Settings, dry_run: bool = False, cluster: Cluster | None = None,
            client: MlflowClient | None = None) -> dict:
    """All traffic to the canary and `champion` to its version (old champion: `previous`).
    Cluster first; if moving the aliases then fails, the aliases and the patch are undone."""
    cluster, client, name, namespace = _context(settings, cluster, client)
    challenger = aliased(client, name, CHALLENGER)
    if challenger is None:
        raise RolloutError(f"{name} has no '{CHALLENGER}' alias: nothing to promote")
    before = alias_snapshot(client, name)
    moves = {PREVIOUS: before[CHAMPION] or before[PREVIOUS], CHAMPION: challenger.number,
             CHALLENGER: None}
    patch = promote_patch()
    plan = _plan("promote", name, namespace, patch, settings, challenger=challenger.number,
                 champion=before[CHAMPION], alias_moves=moves)
    if dry_run:
        return {**plan, "applied": False}
    serving_uri, percent = predictor_state(cluster.get(name, namespace))
    if serving_uri != challenger.storage_uri:
        raise RolloutError(f"the InferenceService's latest revision serves {serving_uri}, not "
                           f"the challenger (version {challenger.number}, "
                           f"{challenger.storage_uri}): run `civicsense rollout canary` first")
    try:
        cluster.patch(name, namespace, patch)
    except Exception as error:
        raise RolloutError(f"cluster patch failed, aliases not moved: {error}") from error
    try:
        apply_aliases(client, name, moves)
    except Exception as error:
        problems = []
        try:
            apply_aliases(client, name, before)
        except Exception as undo:  # noqa: BLE001 - reported below, with the original error
            problems.append(f"restoring aliases {before} also failed: {undo}")
        try:
            cluster.patch(name, namespace, restore_percent_patch(percent))
        except Exception as undo:  # noqa: BLE001
            problems.append(f"reverting the cluster patch also failed: {undo}")
        state = "; ".join(problems) or f"cluster patch reverted (canaryTrafficPercent={percent})"
        raise RolloutError(f"moving aliases failed ({error}); {state}") from error
    return {**plan, "applied": True}


def rollback(settings: Settings, dry_run: bool = False, cluster: Cluster | None = None,
             client: MlflowClient | None = None) -> dict:
    """All traffic back to the previous rolled-out revision; no alias moves (champion is what
    that revision serves)."""
    cluster, client, name, namespace = _context(settings, cluster, client)
    patch = rollback_patch()
    plan = _plan("rollback", name, namespace, patch, settings,
                 champion=aliased_number(client, name, CHAMPION), alias_moves={})
    if dry_run:
        return {**plan, "applied": False}
    _, percent = predictor_state(cluster.get(name, namespace))
    if percent is None:
        raise RolloutError("no canary in progress (spec.predictor.canaryTrafficPercent is "
                           "unset): nothing to roll back")
    cluster.patch(name, namespace, patch)
    return {**plan, "applied": True}


# ---------------------------------------------------------------- strict manifest parsing


def _model_class(name: str):
    import kserve.models as ks
    import kubernetes.client.models as k8s

    for module in (ks, k8s):
        if hasattr(module, name):
            return getattr(module, name)
    raise RolloutError(f"no SDK model named {name}")


_PRIMITIVES: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "object": lambda v: True,
    "ResourceQuantity": lambda v: isinstance(v, str | int | float) and not isinstance(v, bool),
    "datetime": lambda v: isinstance(v, str),
    "date": lambda v: isinstance(v, str),
}


def to_model(data: Any, klass: str, path: str = "$") -> Any:
    """Deserialize a manifest into the KServe / Kubernetes SDK models, strictly: an unknown
    field, a wrong type or a missing required field is an error naming where it is (the SDKs'
    own deserializers silently drop unknown fields)."""
    if data is None:
        return None
    if klass.startswith("list["):
        if not isinstance(data, list):
            raise RolloutError(f"{path}: expected a list")
        inner = klass[5:-1]
        return [to_model(item, inner, f"{path}[{i}]") for i, item in enumerate(data)]
    if klass.startswith("dict("):
        if not isinstance(data, dict):
            raise RolloutError(f"{path}: expected a mapping")
        inner = re.match(r"dict\(([^,]*), (.*)\)", klass).group(2)
        return {k: to_model(v, inner, f"{path}.{k}") for k, v in data.items()}
    if klass in _PRIMITIVES:
        if not _PRIMITIVES[klass](data):
            raise RolloutError(f"{path}: expected {klass}, got {type(data).__name__} {data!r}")
        return data
    cls = _model_class(klass)
    if not isinstance(data, dict):
        raise RolloutError(f"{path}: expected a {klass} mapping")
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(by_json))
    if unknown:
        raise RolloutError(f"{path}: unknown field(s) {unknown} for {klass}")
    kwargs = {by_json[key]: to_model(value, cls.openapi_types[by_json[key]], f"{path}.{key}")
              for key, value in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        raise RolloutError(f"{path}: invalid {klass}: {error}") from None


KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
    ("v1", "Secret"): "V1Secret",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("batch/v1", "CronJob"): "V1CronJob",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
}


def parse_manifest(doc: dict) -> Any:
    """One manifest document into its SDK model, by apiVersion and kind."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in KINDS:
        raise RolloutError(f"unsupported manifest kind {key}")
    return to_model(doc, KINDS[key], f"{key[1]}")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what `kubectl patch --type merge` does), for offline checks."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
