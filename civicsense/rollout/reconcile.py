"""Where a rollout stands (the live traffic split beside the MLflow aliases, and whether they
agree) and reconciliation: finishing a recorded intent, idempotently, after any interruption."""

from __future__ import annotations

from collections.abc import Callable

from mlflow import MlflowClient

from civicsense.rollout.cluster import Cluster, ClusterTimeout
from civicsense.rollout.intent import Intent, Journal, annotated_intent, annotation_patch
from civicsense.rollout.patches import (
    MODE_ANNOTATION,
    SERVERLESS,
    STANDARD,
    VERSION_ENV,
    RolloutError,
    canaries_of,
    env_value,
    patch_is_applied,
    predictor_of,
)
from civicsense.training.registry import (
    ALIASES,
    CHALLENGER,
    CHAMPION,
    Version,
    alias_snapshot,
    apply_aliases,
    find_version,
)

Log = Callable[[str], None]
# Opening a client already reads the registry (a SQLite store checks its tables): opened late,
# inside the step that needs it, so an outage is reported as one, with the intent kept.
OpenClient = Callable[[], MlflowClient]
# status.deploymentMode and the annotation, lower-cased: KServe >= 0.16 records "Knative" and
# "Standard"; "Serverless" and "RawDeployment" are their deprecated names, still accepted
# (kserve v0.20.0 pkg/constants/constants.go:561-567, ParseDeploymentMode :571-587).
LIVE_MODES = {"knative": SERVERLESS, "serverless": SERVERLESS, "standard": STANDARD,
              "rawdeployment": STANDARD}


class RegistryUnavailable(RolloutError):
    """The MLflow registry could not be read or written."""


def registry_versions(open_client: OpenClient, name: str) -> dict[str, Version | None]:
    """Each project alias's version (None: unset); any registry failure is RegistryUnavailable."""
    try:
        client = open_client()
        return {alias: find_version(client, name, alias) for alias in ALIASES}
    except Exception as error:  # noqa: BLE001 - SQL, HTTP and MLflow errors alike
        raise RegistryUnavailable(f"the MLflow registry is unreachable ({error})") from None


def live_mode(isvc: dict) -> str:
    """The deployment mode the InferenceService runs in: the controller's status, else its
    annotation, else the canary form it carries, else KServe's default (Standard)."""
    declared = ((isvc.get("status") or {}).get("deploymentMode")
                or ((isvc.get("metadata") or {}).get("annotations") or {}).get(MODE_ANNOTATION))
    if declared:
        if declared.lower() not in LIVE_MODES:
            raise RolloutError(f"deployment mode {declared} has no canary rollout here")
        return LIVE_MODES[declared.lower()]
    if canaries_of(isvc):
        return STANDARD
    return SERVERLESS if predictor_of(isvc).get("canaryTrafficPercent") is not None else STANDARD


def served_version(model: dict, known: dict[str, Version | None]) -> str | None:
    """The registered version a predictor's model serves: its version env, else the version
    whose storageUri it loads."""
    found = env_value(model, VERSION_ENV)
    if found:
        return str(found)
    uri = model.get("storageUri")
    return next((v.number for v in known.values() if v and v.storage_uri == uri), None)


def traffic_split(isvc: dict, mode: str, known: dict[str, Version | None]) -> list[dict]:
    """Where the spec sends the traffic: one entry per destination (role, version, percent)."""
    predictor = predictor_of(isvc)
    main = served_version(predictor.get("model") or {}, known)
    if mode == SERVERLESS:
        percent = predictor.get("canaryTrafficPercent")
        latest = {"role": "latest revision", "version": main, "percent": 100}
        if percent is None or percent >= 100:
            return [latest]
        return [{"role": "previous rolled-out revision", "version": None,
                 "percent": 100 - percent}, {**latest, "percent": percent}]
    # KServe v0.20.0 routes a Standard canary no traffic: its trafficPercent sizes its replicas
    # (components/predictor.go:886-895); the ingress sends everything to the main predictor.
    canaries = [{"role": f"canary {c['predictor'].get('name')} (replica-only)",
                 "version": served_version(c["predictor"].get("model") or {}, known),
                 "percent": 0, "trafficPercent": c.get("trafficPercent", 0)}
                for c in canaries_of(isvc)]
    return [{"role": f"predictor {predictor.get('name') or '(default)'}", "version": main,
             "percent": 100}, *canaries]


def reported_traffic(isvc: dict) -> list:
    """The split KServe's controller reports in status (empty until it has reconciled)."""
    status = isvc.get("status") or {}
    return (((status.get("components") or {}).get("predictor") or {}).get("traffic")
            or status.get("canaryStatuses") or [])


def disagreements(split: list[dict], mode: str, aliases: dict[str, str | None]) -> list[str]:
    """Why the traffic split and the aliases disagree (empty: they agree). The champion must be
    what takes the main share; a canary must serve the challenger, never the champion."""
    champion, challenger = aliases[CHAMPION], aliases[CHALLENGER]
    problems = []
    if mode == SERVERLESS:
        latest = split[-1]
        if latest["percent"] == 100 and latest["version"] != champion:
            problems.append(f"all traffic goes to version {latest['version']} but "
                            f"'{CHAMPION}' is {champion}")
        elif latest["percent"] == 0 and latest["version"] == champion:
            problems.append(f"'{CHAMPION}' {champion} is the rolled-back revision (0%)")
        elif 0 < latest["percent"] < 100 and latest["version"] != challenger:
            problems.append(f"the canary serves version {latest['version']} but "
                            f"'{CHALLENGER}' is {challenger}")
        return problems
    main, canaries = split[0], split[1:]
    if main["version"] != champion:
        problems.append(f"the main predictor serves version {main['version']} but "
                        f"'{CHAMPION}' is {champion}")
    problems += [f"{c['role']} serves version {c['version']} but '{CHALLENGER}' is {challenger}"
                 for c in canaries if c["version"] != challenger]
    return problems


def pending_intent(isvc: dict, journal: Journal, name: str, namespace: str) -> Intent | None:
    """The unfinished intent: the journal's, else the one annotated on the InferenceService
    (written by another machine) unless the journal has it finished."""
    mine = journal.pending(name, namespace)
    theirs = annotated_intent(isvc)
    if theirs is not None and (journal.finished(theirs.id) or theirs.name != name):
        theirs = None
    candidates = [i for i in (mine, theirs) if i is not None]
    return max(candidates, key=lambda i: i.at) if candidates else None


def status(cluster: Cluster, open_client: OpenClient, journal: Journal, name: str,
           namespace: str) -> dict:
    """The live split, the aliases, any unfinished intent, and whether they all agree."""
    isvc = cluster.get(name, namespace)
    mode = live_mode(isvc)
    intent = pending_intent(isvc, journal, name, namespace)
    problems = []
    try:
        known = registry_versions(open_client, name)
    except RegistryUnavailable as error:
        known, problems = {}, [str(error)]
    aliases = {alias: (v.number if v else None) for alias, v in known.items()} or None
    split = traffic_split(isvc, mode, known)
    if aliases is not None:
        problems += disagreements(split, mode, aliases)
    if intent is not None:
        problems.append(f"an unfinished {intent.action} ({intent.summary}; intent {intent.id} "
                        f"of {intent.at}): run `civicsense rollout reconcile`")
    return {"inferenceservice": name, "namespace": namespace, "mode": mode, "traffic": split,
            "reported_by_kserve": reported_traffic(isvc), "aliases": aliases,
            "pending_intent": intent.id if intent else None, "agree": not problems,
            "problems": problems}


def _patch_until_applied(cluster: Cluster, intent: Intent, patch: dict, what: str,
                         log: Log, attempts: int = 2) -> None:
    """Apply a merge patch unless the object already has it; after a kubectl timeout, read the
    object back and decide from what the server holds (never from the timeout)."""
    for attempt in range(1, attempts + 1):
        try:
            if patch_is_applied(cluster.get(intent.name, intent.namespace), patch):
                return
            cluster.patch(intent.name, intent.namespace, patch)
            return
        except ClusterTimeout as error:
            log(f"{what}: {error}; outcome unknown (the server may have applied it), "
                "reconciling")
            if attempt == attempts:
                break
    try:
        if patch_is_applied(cluster.get(intent.name, intent.namespace), patch):
            return
    except ClusterTimeout:
        pass
    raise ClusterTimeout(f"{what}: still unknown after {attempts} kubectl timeouts; the intent "
                         f"{intent.id} is kept: run `civicsense rollout reconcile` when the "
                         "API server answers")


def finish(intent: Intent, cluster: Cluster, open_client: OpenClient, journal: Journal,
           log: Log = lambda _: None) -> dict:
    """Bring the cluster and then the aliases to the intent's target (each step skipped when
    already there), then close the intent. Safe to repeat at any point."""
    _patch_until_applied(cluster, intent, annotation_patch(intent), "recording the intent", log)
    _patch_until_applied(cluster, intent, intent.patch, f"{intent.action} patch", log)
    log(f"cluster: {intent.summary} is applied")
    try:
        client = open_client()
        apply_aliases(client, intent.name, intent.aliases)
        now = alias_snapshot(client, intent.name)
    except Exception as error:  # noqa: BLE001 - SQL, HTTP and MLflow errors alike
        raise RegistryUnavailable(
            f"the cluster has the {intent.action} but moving the aliases {intent.aliases} "
            f"failed ({error}); the intent {intent.id} is kept: run `civicsense rollout "
            "reconcile` when the registry is back") from None
    wrong = {a: now[a] for a, v in intent.aliases.items() if now.get(a) != v}
    if wrong:
        raise RegistryUnavailable(f"aliases still {wrong} after moving them to "
                                  f"{intent.aliases}; the intent {intent.id} is kept")
    if intent.aliases:
        log(f"aliases: {intent.aliases}")
    journal.finish(intent.id)
    try:
        _patch_until_applied(cluster, intent, annotation_patch(None), "clearing the intent", log)
    except RolloutError as error:  # finished per the journal: a stale annotation is ignored
        log(f"the rollout is complete; clearing the intent annotation failed ({error})")
    return {"intent": intent.id, "action": intent.action, "mode": intent.mode,
            "summary": intent.summary, "alias_moves": intent.aliases, "completed": True}


def reconcile(cluster: Cluster, open_client: OpenClient, journal: Journal, name: str,
              namespace: str, log: Log = lambda _: None) -> dict:
    """Finish the unfinished intent, if any; otherwise check that cluster and aliases agree
    (a disagreement nobody recorded is not guessed at: it is an error that says what differs)."""
    isvc = cluster.get(name, namespace)
    intent = pending_intent(isvc, journal, name, namespace)
    if intent is None:
        stale = annotated_intent(isvc)
        if stale is not None:
            cluster.patch(name, namespace, annotation_patch(None))
        now = status(cluster, open_client, journal, name, namespace)
        if not now["agree"]:
            raise RolloutError("no unfinished rollout is recorded, yet: "
                               + "; ".join(now["problems"])
                               + " — choose with `civicsense rollout canary|promote|rollback`")
        return {"intent": None, "completed": True, "summary": "nothing to reconcile: traffic "
                "and aliases agree"}
    log(f"finishing {intent.action} ({intent.summary}; intent {intent.id} of {intent.at})")
    return finish(intent, cluster, open_client, journal, log)
