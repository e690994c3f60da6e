"""The rollout's JSON merge patches for both KServe canary forms, and what they make of an
InferenceService (pure functions: no cluster, no registry). Sources: kserve/kserve at v0.20.0.

Serverless (Knative) mode, the real traffic canary: `spec.predictor.canaryTrafficPercent` splits
the traffic between the latest revision and the previous rolled-out one (reconcilers/knative/
ksvc_reconciler.go:132-153); promote removes it, rollback sets it to 0.
Standard (RawDeployment) mode: `spec.canary: [{trafficPercent, predictor}]` runs the challenger
in a Deployment and Service of its own (`{isvc}-v<N>-predictor`), but at v0.20.0 trafficPercent
only sets that Deployment's replica count (components/predictor.go:886-895, canaryReplicaCount):
the ingress and the main predictor's Service, which selects only the main Deployment's pods,
send it no traffic (reconcilers/ingress/kube_ingress_reconciler.go:248,301-312;
reconcilers/service/service_reconciler.go:174-182). A Standard canary is replica-only: the
challenger is up and reachable on its own Service, the endpoint still serves the champion.
Promote puts the canary's model (storageUri, version env) on the main predictor and removes
`spec.canary`: the main predictor keeps its name, so its Service keeps its name
(civicsense.rollout.kserve_names) and no `model.name` reaches `spec.predictor`, which KServe's
webhook refuses (apis/serving/v1beta1/inference_service_validation.go:296-297); the CRD
requires `model.name` in `spec.canary[].predictor`, so the canary always carries one.
"""

from __future__ import annotations

import copy
from typing import Any

from civicsense.rollout.kserve_names import predictor_service_name
from civicsense.rollout.manifests import merge_patch

STANDARD, SERVERLESS = "standard", "serverless"
MODES = (STANDARD, SERVERLESS)
ACTIONS = ("canary", "promote", "rollback")
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
# The annotation's values for each mode: pkg/constants/constants.go:561-567 (Knative is the
# current name of what was "Serverless", Standard of "RawDeployment").
MODE_VALUES = {STANDARD: "Standard", SERVERLESS: "Knative"}
# KServe's own default container name for a predictor's model.
MODEL_CONTAINER = "kserve-container"
VERSION_ENV, RUN_ENV = "CIVICSENSE_MODEL_VERSION", "CIVICSENSE_MODEL_RUN_ID"
# What check-manifests and the examples roll out when no challenger is given.
EXAMPLE_CHALLENGER = {"storage_uri": "gs://civicsense-mlflow/artifacts/1/models/m-CHALLENGER/"
                      "artifacts", "version": "2", "run_id": "RUN_ID_OF_THE_CHALLENGER",
                      "percent": 10}


class RolloutError(RuntimeError):
    """A rollout step that could not be done; the message says what state things are in."""


def patch_is_applied(obj: dict, patch: dict) -> bool:
    """True when applying `patch` would change nothing: the object already is the target
    (merge patches are idempotent, so this is how a rollout checks a step it may have done)."""
    return merge_patch(obj, patch) == obj


def check_percent(percent: int) -> int:
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 < percent < 100:
        raise RolloutError(f"--percent must be between 1 and 99, not {percent}")
    return percent


def canary_name(version: str) -> str:
    """The Standard-mode predictor name of a version (a DNS label: `v2`)."""
    return f"v{version}"


def version_env(version: str, run_id: str) -> list[dict[str, str]]:
    """Env the runtime reads to report which registered version a directory model is."""
    return [{"name": VERSION_ENV, "value": str(version)}, {"name": RUN_ENV, "value": run_id}]


# ---------------------------------------------------------------- Serverless (Knative)


def canary_patch(storage_uri: str, version: str, run_id: str, percent: int) -> dict:
    """Serverless: a new predictor revision on `storage_uri` taking `percent` of traffic."""
    return {"spec": {"predictor": {"canaryTrafficPercent": check_percent(percent), "model": {
        "storageUri": storage_uri, "env": version_env(version, run_id)}}}}


def promote_patch() -> dict:
    """Serverless: drop canaryTrafficPercent, so the latest revision takes all traffic."""
    return {"spec": {"predictor": {"canaryTrafficPercent": None}}}


def rollback_patch() -> dict:
    """Serverless: 0% to the latest revision, all traffic back to the previous rolled-out one."""
    return {"spec": {"predictor": {"canaryTrafficPercent": 0}}}


def restore_patch(storage_uri: str, version: str, run_id: str) -> dict:
    """Serverless, after a promotion: a new revision of an earlier version with all traffic."""
    return {"spec": {"predictor": {"canaryTrafficPercent": None, "model": {
        "storageUri": storage_uri, "env": version_env(version, run_id)}}}}


# ---------------------------------------------------------------- Standard (RawDeployment)


def standard_canary_patch(model_spec: dict, storage_uri: str, version: str, run_id: str,
                          percent: int, name: str | None = None) -> dict:
    """Standard mode: a named canary predictor beside the main one (replica-only at KServe
    v0.20.0: see the module's docstring). Its model is the main one's with the challenger's
    storageUri and env (and a container name, which the CRD requires there)."""
    model = {**copy.deepcopy(model_spec), "storageUri": storage_uri,
             "env": version_env(version, run_id)}
    model.setdefault("name", MODEL_CONTAINER)
    return {"spec": {"canary": [{"trafficPercent": check_percent(percent), "predictor": {
        "name": name or canary_name(version), "model": model}}]}}


def standard_canary_predictor(predictor: dict, model_spec: dict, storage_uri: str, version: str,
                              run_id: str) -> dict:
    """The whole canary predictor: the main predictor's settings (service account, logger,
    security context…) with the challenger's model; replicas and canary fields left out."""
    base = {key: copy.deepcopy(value) for key, value in predictor.items()
            if key not in ("model", "name", "canaryTrafficPercent", "minReplicas",
                           "maxReplicas")}
    canary = standard_canary_patch(model_spec, storage_uri, version, run_id, 10)
    return {**base, **canary["spec"]["canary"][0]["predictor"]}


def standard_promote_patch(canary_predictor: dict) -> dict:
    """Standard mode: the main predictor takes the canary's model (storageUri and version env;
    a rolling update of its own Deployment, under its own name) and `spec.canary` goes. The
    canary's `model.name` stays behind: KServe refuses it in spec.predictor."""
    model = canary_predictor.get("model") or {}
    return {"spec": {"predictor": {"model": {"storageUri": model.get("storageUri"),
                                             "env": copy.deepcopy(model.get("env") or [])}},
                     "canary": None}}


def standard_canary_warning(isvc_name: str, canary_predictor_name: str, percent: int) -> str:
    """What a Standard-mode canary does at KServe v0.20.0, said plainly."""
    return (f"Standard mode is replica-only at KServe v0.20.0: trafficPercent {percent} sets "
            "the canary's replica count, and the endpoint keeps sending 100% of its traffic "
            "to the main predictor (0% to the canary). Test the challenger on its own Service, "
            f"{predictor_service_name(isvc_name, canary_predictor_name)}; for a real traffic "
            "split run the InferenceService in Knative mode and use --mode serverless.")


def standard_rollback_patch() -> dict:
    """Standard mode: remove the canary; the main predictor keeps all traffic."""
    return {"spec": {"canary": None}}


def standard_restore_patch(storage_uri: str, version: str, run_id: str) -> dict:
    """Standard mode, after a promotion: the main predictor back on an earlier version (a rolling
    update of the same Deployment)."""
    return {"spec": {"predictor": {"model": {"storageUri": storage_uri,
                                             "env": version_env(version, run_id)}}}}


# ---------------------------------------------------------------- reading an InferenceService


def predictor_of(isvc: dict) -> dict:
    return (isvc.get("spec") or {}).get("predictor") or {}


def canaries_of(isvc: dict) -> list[dict]:
    return list((isvc.get("spec") or {}).get("canary") or [])


def env_value(model: dict, name: str) -> str | None:
    for item in model.get("env") or []:
        if item.get("name") == name:
            return item.get("value")
    return None


def canary_in_progress(isvc: dict, mode: str) -> bool:
    """Whether part of the traffic goes to a canary (Serverless: 0 < percent < 100)."""
    if mode == STANDARD:
        return bool(canaries_of(isvc))
    percent = predictor_of(isvc).get("canaryTrafficPercent")
    return percent is not None and 0 < percent < 100


def canary_patch_for(isvc: dict, mode: str, storage_uri: str, version: str, run_id: str,
                     percent: int) -> dict:
    """The canary patch of `mode` for this InferenceService."""
    if mode == SERVERLESS:
        return canary_patch(storage_uri, version, run_id, percent)
    predictor = predictor_of(isvc)
    canary = standard_canary_predictor(predictor, predictor.get("model") or {}, storage_uri,
                                       version, run_id)
    # KServe refuses a canary named like the main predictor (inference_service_validation.go:
    # 212-214); the rollout never names the main one, but a hand-made object may.
    if canary["name"] == predictor.get("name"):
        canary["name"] += "-canary"
    return {"spec": {"canary": [{"trafficPercent": check_percent(percent),
                                 "predictor": canary}]}}


def promote_patch_for(isvc: dict, mode: str) -> dict:
    """The promote patch of `mode` for this InferenceService (which must have a canary)."""
    if mode == SERVERLESS:
        if predictor_of(isvc).get("canaryTrafficPercent") is None:
            raise RolloutError("no canary to promote (spec.predictor.canaryTrafficPercent is "
                               "unset): run `civicsense rollout canary` first")
        return promote_patch()
    canaries = canaries_of(isvc)
    if len(canaries) != 1:
        raise RolloutError(f"expected one canary in spec.canary, found {len(canaries)}: "
                           "run `civicsense rollout canary` first")
    return standard_promote_patch(canaries[0]["predictor"])


def abort_patch_for(mode: str) -> dict:
    """The patch that takes all traffic off the canary."""
    return rollback_patch() if mode == SERVERLESS else standard_rollback_patch()


def restore_patch_for(mode: str, storage_uri: str, version: str, run_id: str) -> dict:
    """The patch that serves an earlier version with all traffic (no canary in progress)."""
    return (restore_patch if mode == SERVERLESS else standard_restore_patch)(
        storage_uri, version, run_id)


def patched_inference_service(base: dict, action: str, mode: str, **kwargs: Any) -> dict:
    """The whole InferenceService after a rollout `action` (canary, promote, rollback) in `mode`
    (standard, serverless), from `base`, exactly as the CLI's merge patches make it.

    `base` is taken as deployed in `mode` (its deploymentMode annotation is set accordingly).
    Keyword arguments: the challenger's `storage_uri`, `version`, `run_id` and `percent`
    (defaults: EXAMPLE_CHALLENGER). promote and rollback start from the canary when `base` has
    none in progress; rollback given `previous_uri`, `previous_version` (and
    `previous_run_id`) on a base without a canary instead serves that earlier version, as the
    CLI does after a promotion."""
    if mode not in MODES:
        raise RolloutError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if action not in ACTIONS:
        raise RolloutError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    unknown = set(kwargs) - {*EXAMPLE_CHALLENGER, "previous_uri", "previous_version",
                             "previous_run_id"}
    if unknown:
        raise TypeError(f"unknown argument(s) {sorted(unknown)}")
    challenger = {**EXAMPLE_CHALLENGER, **{k: v for k, v in kwargs.items()
                                           if k in EXAMPLE_CHALLENGER}}
    obj = copy.deepcopy(base)
    obj.setdefault("metadata", {}).setdefault("annotations", {})[MODE_ANNOTATION] = (
        MODE_VALUES[mode])
    if action == "rollback" and "previous_uri" in kwargs and not canary_in_progress(obj, mode):
        return merge_patch(obj, restore_patch_for(
            mode, kwargs["previous_uri"], str(kwargs.get("previous_version", "1")),
            kwargs.get("previous_run_id", "none")))
    if action == "canary" or not canary_in_progress(obj, mode):
        obj = merge_patch(obj, canary_patch_for(obj, mode, **challenger))
    if action == "promote":
        obj = merge_patch(obj, promote_patch_for(obj, mode))
    elif action == "rollback":
        obj = merge_patch(obj, abort_patch_for(mode))
    return copy.deepcopy(obj)
