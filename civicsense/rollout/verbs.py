"""Canary rollout of the registered model on the KServe InferenceService, with the MLflow aliases
moved in step: canary, promote and rollback, in Serverless/Knative mode (`canaryTrafficPercent`:
a real traffic split) or Standard mode (`spec.canary`: replica-only at KServe v0.20.0, the
challenger beside the champion with none of the endpoint's traffic; patches.py says why).

Each verb checks the live object and the registry, refuses what KServe's admission webhook would
refuse (civicsense.rollout.admission), writes its intent (journal + annotation)
before changing anything, then finishes it with the same idempotent code `reconcile` runs: the
cluster patch first, the alias moves second. An interruption anywhere leaves an intent that
`civicsense rollout reconcile` (or the next verb) completes. Patches: patches.py.
"""

from __future__ import annotations

from mlflow import MlflowClient

from civicsense.rollout.admission import admission_problems
from civicsense.rollout.cluster import (
    RESOURCE,
    Cluster,
    ClusterTimeout,
    KubectlCluster,
    kubectl_command,
)
from civicsense.rollout.intent import INTENT_ANNOTATION, Intent, Journal
from civicsense.rollout.manifests import merge_patch
from civicsense.rollout.patches import (
    MODE_ANNOTATION,
    MODES,
    SERVERLESS,
    RolloutError,
    abort_patch_for,
    canaries_of,
    canary_in_progress,
    canary_patch,
    canary_patch_for,
    patched_inference_service,
    predictor_of,
    promote_patch,
    promote_patch_for,
    restore_patch_for,
    rollback_patch,
    standard_canary_patch,
    standard_canary_warning,
    standard_promote_patch,
    standard_rollback_patch,
    version_env,
)
from civicsense.rollout.reconcile import (
    Log,
    RegistryUnavailable,
    finish,
    live_mode,
    pending_intent,
    reconcile,
    registry_versions,
    served_version,
    status,
)
from civicsense.settings import Settings
from civicsense.training.registry import CHALLENGER, CHAMPION, PREVIOUS, Version, registry_client

__all__ = [
    "INTENT_ANNOTATION", "RESOURCE", "Cluster", "ClusterTimeout", "KubectlCluster",
    "RegistryUnavailable", "RolloutError", "canary", "canary_patch", "patched_inference_service",
    "promote", "promote_patch", "reconcile_rollout", "rollback", "rollback_patch",
    "rollout_status", "standard_canary_patch", "standard_promote_patch",
    "standard_rollback_patch", "version_env",
]
# Schemes KServe's storage initializer can fetch; a file:// URI means a laptop registry.
CLUSTER_SCHEMES = ("gs://", "s3://", "pvc://", "https://", "hf://", "oci://")


def cluster_uri(version: Version, alias: str) -> str:
    if not version.storage_uri.startswith(CLUSTER_SCHEMES):
        raise RolloutError(f"{alias} version {version.number} lives at {version.storage_uri}, "
                           "which a cluster cannot read: log models to gs:// (a remote MLflow "
                           "artifact store) before rolling them out")
    return version.storage_uri


class _Run:
    """What one verb works with: the cluster, the registry, the journal and the names."""

    def __init__(self, settings: Settings, cluster: Cluster | None,
                 client: MlflowClient | None, log: Log):
        self.settings, self.log = settings, log
        self.cluster = cluster or KubectlCluster(settings.k8s_context,
                                                 timeout=settings.kubectl_timeout)
        self._client = client
        self.journal = Journal.under(settings.home_dir)
        self.name, self.namespace = settings.model_name, settings.k8s_namespace

    def client(self) -> MlflowClient:
        """The registry client, opened on first use (opening already reads the registry)."""
        if self._client is None:
            self._client = registry_client(self.settings)
        return self._client

    def live(self) -> tuple[dict, dict[str, Version | None]]:
        """The InferenceService and the aliases, refusing while an intent is unfinished."""
        isvc = self.cluster.get(self.name, self.namespace)
        unfinished = pending_intent(isvc, self.journal, self.name, self.namespace)
        if unfinished is not None:
            raise RolloutError(f"an unfinished {unfinished.action} ({unfinished.summary}; "
                               f"intent {unfinished.id}): run `civicsense rollout reconcile` "
                               "first")
        return isvc, registry_versions(self.client, self.name)

    def carry_out(self, live: dict, action: str, mode: str, patch: dict, aliases: dict,
                  summary: str, dry_run: bool, **extra) -> dict:
        refused = admission_problems(merge_patch(live, patch), old=live)
        if refused:
            raise RolloutError(f"KServe's admission webhook would refuse the {action} patch: "
                               + "; ".join(refused))
        plan = {"verb": action, "inferenceservice": self.name, "namespace": self.namespace,
                "mode": mode, "summary": summary, "patch_type": "merge", "patch": patch,
                "kubectl": kubectl_command(self.name, self.namespace, patch,
                                           self.settings.k8s_context),
                "alias_moves": aliases, **extra}
        if dry_run:
            return {**plan, "applied": False}
        intent = Intent(action, mode, self.name, self.namespace, patch, aliases, summary)
        self.journal.begin(intent)  # before any change: from here on, reconcile can finish it
        self.log(f"intent {intent.id}: {action} ({summary}) recorded in {self.journal.path}")
        done = finish(intent, self.cluster, self.client, self.journal, self.log)
        return {**plan, "intent": done["intent"], "applied": True}


def _number(version: Version | None) -> str | None:
    return version.number if version else None


def canary(settings: Settings, percent: int = 10, mode: str = "standard", dry_run: bool = False,
           cluster: Cluster | None = None, client: MlflowClient | None = None,
           log: Log = lambda _: None) -> dict:
    """The challenger beside the champion with `percent` of the traffic, in `mode`'s form."""
    if mode not in MODES:
        raise RolloutError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    run = _Run(settings, cluster, client, log)
    with run.journal.lock():
        isvc, known = run.live()
        declared = live_mode(isvc) if _declares_mode(isvc) else None
        if declared is not None and declared != mode:
            raise RolloutError(f"--mode {mode}, but the InferenceService runs in {declared} "
                               f"mode (where the {mode} canary form is ignored): use --mode "
                               f"{declared}")
        challenger, champion = known[CHALLENGER], known[CHAMPION]
        if challenger is None:
            raise RolloutError(f"{run.name} has no '{CHALLENGER}' alias: nothing to roll out")
        if champion is not None and champion.number == challenger.number:
            raise RolloutError(f"the challenger (version {challenger.number}) is already "
                               "champion")
        patch = canary_patch_for(isvc, mode, cluster_uri(challenger, CHALLENGER),
                                 challenger.number, challenger.run_id, percent)
        extra, summary = {}, f"version {challenger.number} at {percent}%"
        if mode != SERVERLESS:
            name = patch["spec"]["canary"][0]["predictor"]["name"]
            extra["warning"] = standard_canary_warning(run.name, name, percent)
            summary = f"version {challenger.number} beside the champion (replica-only, 0%)"
            log(f"warning: {extra['warning']}")
        return run.carry_out(isvc, "canary", mode, patch, {}, summary, dry_run,
                             challenger=challenger.number, champion=_number(champion), **extra)


def _declares_mode(isvc: dict) -> bool:
    return bool((isvc.get("status") or {}).get("deploymentMode")
                or ((isvc.get("metadata") or {}).get("annotations") or {}).get(MODE_ANNOTATION))


def _canary_version(isvc: dict, mode: str, known: dict) -> str | None:
    if mode == SERVERLESS:
        return served_version(predictor_of(isvc).get("model") or {}, known)
    canaries = canaries_of(isvc)
    return served_version(canaries[0]["predictor"].get("model") or {}, known) if canaries else None


def promote(settings: Settings, dry_run: bool = False, cluster: Cluster | None = None,
            client: MlflowClient | None = None, log: Log = lambda _: None) -> dict:
    """All traffic to the canary; then `champion` to its version, the old champion
    `previous`, `challenger` removed."""
    run = _Run(settings, cluster, client, log)
    with run.journal.lock():
        isvc, known = run.live()
        mode = live_mode(isvc)
        challenger, champion = known[CHALLENGER], known[CHAMPION]
        if challenger is None:
            raise RolloutError(f"{run.name} has no '{CHALLENGER}' alias: nothing to promote")
        patch = promote_patch_for(isvc, mode)
        serving = _canary_version(isvc, mode, known)
        if serving != challenger.number:
            raise RolloutError(f"the canary serves version {serving}, not the challenger "
                               f"(version {challenger.number}): run `civicsense rollout "
                               "canary` first")
        moves = {PREVIOUS: _number(champion) or _number(known[PREVIOUS]),
                 CHAMPION: challenger.number, CHALLENGER: None}
        return run.carry_out(isvc, "promote", mode, patch, moves, f"version {challenger.number} "
                             "takes all traffic", dry_run, challenger=challenger.number,
                             champion=_number(champion))


def rollback(settings: Settings, dry_run: bool = False, cluster: Cluster | None = None,
             client: MlflowClient | None = None, log: Log = lambda _: None) -> dict:
    """During a canary: all traffic back to the champion (no alias moves). After a promotion:
    the `previous` version back with all traffic, and `champion` to it."""
    run = _Run(settings, cluster, client, log)
    with run.journal.lock():
        isvc, known = run.live()
        mode = live_mode(isvc)
        champion, previous = known[CHAMPION], known[PREVIOUS]
        if canary_in_progress(isvc, mode):
            return run.carry_out(isvc, "rollback", mode, abort_patch_for(mode), {},
                                 f"canary off, champion {_number(champion)} takes all traffic",
                                 dry_run, champion=_number(champion))
        if mode == SERVERLESS and predictor_of(isvc).get("canaryTrafficPercent") == 0:
            raise RolloutError("the canary is already rolled back (canaryTrafficPercent 0): "
                               f"champion {_number(champion)} takes all traffic")
        if previous is None:
            raise RolloutError(f"no canary in progress and no '{PREVIOUS}' alias: nothing to "
                               "roll back")
        patch = restore_patch_for(mode, cluster_uri(previous, PREVIOUS), previous.number,
                                  previous.run_id)
        moves = {CHAMPION: previous.number, PREVIOUS: None, CHALLENGER: None}
        return run.carry_out(isvc, "rollback", mode, patch, moves, f"version {previous.number} "
                             f"back with all traffic (was {_number(champion)})", dry_run,
                             champion=_number(champion), previous=previous.number)


def rollout_status(settings: Settings, cluster: Cluster | None = None,
                   client: MlflowClient | None = None) -> dict:
    """The live traffic split, the aliases, any unfinished intent, and whether they agree."""
    run = _Run(settings, cluster, client, lambda _: None)
    return status(run.cluster, run.client, run.journal, run.name, run.namespace)


def reconcile_rollout(settings: Settings, cluster: Cluster | None = None,
                      client: MlflowClient | None = None, log: Log = lambda _: None) -> dict:
    """Finish whatever rollout was interrupted, or confirm that traffic and aliases agree."""
    run = _Run(settings, cluster, client, log)
    with run.journal.lock():
        return reconcile(run.cluster, run.client, run.journal, run.name, run.namespace, log)

