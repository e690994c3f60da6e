"""Canary rollout of the registered model on the KServe InferenceService, with the MLflow aliases
moved in step: promotion and alias never disagree.

Plain functions build the JSON merge patches; `canary`, `promote` and `rollback` apply them
through an injectable `Cluster` (kubectl by default) and move aliases through an MlflowClient.
Serverless (Knative) mode uses `spec.predictor.canaryTrafficPercent`; the `spec.canary` form of
KServe >= 0.20 Standard mode is built by the `standard_*` functions (see kserve/README.md).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Protocol

from mlflow import MlflowClient

from civicsense.settings import Settings
from civicsense.training.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    Version,
    alias_snapshot,
    alias_version,
    apply_aliases,
    find_version,
    registry_client,
)

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


def cluster_uri(version: Version, alias: str) -> str:
    if not version.storage_uri.startswith(CLUSTER_SCHEMES):
        raise RolloutError(f"{alias} version {version.number} lives at {version.storage_uri}, "
                           "which a cluster cannot read: log models to gs:// (a remote MLflow "
                           "artifact store) before rolling them out")
    return version.storage_uri


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
    challenger = find_version(client, name, CHALLENGER)
    if challenger is None:
        raise RolloutError(f"{name} has no '{CHALLENGER}' alias: nothing to roll out")
    champion = find_version(client, name, CHAMPION)
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
    challenger = find_version(client, name, CHALLENGER)
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
                 champion=alias_version(client, name, CHAMPION), alias_moves={})
    if dry_run:
        return {**plan, "applied": False}
    _, percent = predictor_state(cluster.get(name, namespace))
    if percent is None:
        raise RolloutError("no canary in progress (spec.predictor.canaryTrafficPercent is "
                           "unset): nothing to roll back")
    cluster.patch(name, namespace, patch)
    return {**plan, "applied": True}
