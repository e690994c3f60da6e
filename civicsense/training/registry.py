"""The one way into MLflow: the client, the experiment, the alias names and every alias lookup, and
registration of a candidate under the gate's alias."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from civicsense.settings import Settings

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)
# How MLflow says a model, version or alias does not exist (any other error: the registry failed).
NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}
# Scores are means of recalls: 0.61 - 0.60 must not count as beating a 0.01 margin.
FLOAT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Version:
    """A registered model version: its number, training run and where its artifacts live."""

    number: str
    run_id: str
    storage_uri: str


@dataclass
class Registration:
    version: str
    alias: str | None
    reason: str


def registry_client(settings: Settings) -> MlflowClient:
    """A client on the configured tracking server and registry, without global MLflow state."""
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point MLflow's global state (what `mlflow.start_run` uses) at the configured server and
    select the project's experiment; the client on it."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    if mlflow.get_experiment_by_name(settings.experiment) is None:
        # A database or file store has no artifact server: keep artifacts under home, not in
        # the current directory (MLflow's ./mlruns default). A server chooses its own root.
        local_store = settings.tracking_uri.startswith(("sqlite:", "file:", "/"))
        mlflow.create_experiment(
            settings.experiment, artifact_location=settings.artifact_root if local_store else None
        )
    mlflow.set_experiment(settings.experiment)
    return MlflowClient()


def find_version(client: MlflowClient, name: str, ref: str) -> Version | None:
    """The version an alias (or a version number) points to, or None when the model, alias or
    version does not exist (a registry that cannot answer raises: absent is not unknown)."""
    try:
        found = (client.get_model_version(name, ref) if ref.isdigit()
                 else client.get_model_version_by_alias(name, ref))
    except MlflowException as error:
        if error.error_code not in NOT_FOUND:
            raise
        return None
    return Version(str(found.version), str(found.run_id or "none"),
                   client.get_model_version_download_uri(name, found.version))


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version number an alias points to, or None (a failing registry raises)."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        if error.error_code not in NOT_FOUND:
            raise
        return None


def alias_snapshot(client: MlflowClient, name: str) -> dict[str, str | None]:
    """Where each of the project's aliases points now (None: unset)."""
    return {alias: alias_version(client, name, alias) for alias in ALIASES}


def apply_aliases(client: MlflowClient, name: str, target: dict[str, str | None]) -> None:
    """Set (or, for None, delete) each alias, in order."""
    for alias, number in target.items():
        if number is None:
            if alias_version(client, name, alias) is not None:
                client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, number)


def gate(candidate: float, champion: float | None, margin: float) -> tuple[str | None, str]:
    """Which alias a candidate earns: champion when there is none, challenger when it beats the
    champion's primary metric on the same data by more than `margin`, else none."""
    if champion is None:
        return CHAMPION, "no champion yet"
    if candidate - champion > margin + FLOAT_TOLERANCE:
        return CHALLENGER, f"beats champion {candidate:.4f} vs {champion:.4f} (margin {margin})"
    return None, f"does not beat champion {candidate:.4f} vs {champion:.4f} (margin {margin})"


def register_candidate(
    client: MlflowClient,
    name: str,
    model_uri: str,
    run_id: str,
    candidate_score: float,
    champion_score: float | None,
    margin: float,
    tags: dict[str, str],
    refusals: Sequence[str] = (),
) -> Registration:
    """Register (once per training run) and alias the candidate as the gate decides; a
    challenger with quality `refusals` (slice regressions, failed behaviour suites) gets no
    alias, and the reasons are tagged."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="CivicSense tweet sentiment "
                                       "(negative/neutral/positive) for social-reform debates.")
    existing = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:  # a rerun of the same training run: idempotent, keep its version and aliases
        version = client.get_model_version(name, existing[0].version)
        return Registration(str(version.version), (version.aliases or [None])[0],
                            "already registered by this run")
    version = mlflow.register_model(model_uri, name, tags=tags)
    alias, reason = gate(candidate_score, champion_score, margin)
    if refusals and alias == CHALLENGER:
        alias, reason = None, f"{reason}, but refused: {'; '.join(refusals)}"
    elif refusals and alias == CHAMPION:  # the first model is champion anyway: it must serve
        reason = f"{reason} (quality warnings: {'; '.join(refusals)})"
    elif refusals:
        reason = f"{reason}; quality: {'; '.join(refusals)}"
    client.set_model_version_tag(name, version.version, "gate", reason)
    client.set_model_version_tag(name, version.version, "gate_refusals",
                                 "; ".join(refusals) or "none")
    if alias is not None:
        client.set_registered_model_alias(name, alias, version.version)
    return Registration(str(version.version), alias, reason)


def register(settings: Settings, model_uri: str, run_id: str, data_version: str,
             candidate_score: float, champion_score: float | None, champion_version: str,
             margin: float, pipeline_run: str, data_versions: Sequence[str] = ()) -> dict:
    """The pipeline's register step: register the candidate with its lineage tags, alias it as
    the gate decides, and summarize (version, alias, reason, scores, data version).
    `data_versions`: every source's own data version it trained on (the base first, then each
    labelled snapshot), tagged comma-separated as `data_versions`; `data_version` is the merged
    snapshot's."""
    # Imported here: the quality modules need matplotlib, which the serving image lacks.
    from civicsense.training.model_card import write_card
    from civicsense.training.quality import load_quality, quality_refusals

    client = configure_mlflow(settings)
    versions = list(data_versions) or [data_version]
    tags = {"data_version": data_version, "data_versions": ",".join(versions),
            "pipeline_run": pipeline_run,
            "val_macro_recall": f"{candidate_score:.4f}",
            "compared_with_champion": champion_version or "none"}
    report = load_quality(client, run_id)
    refusals = quality_refusals(report, settings.slice_gate_min_rows, settings.slice_gate_margin)
    result = register_candidate(client, settings.model_name, model_uri, run_id, candidate_score,
                                champion_score, margin, tags, refusals)
    if "model_card" not in client.get_model_version(settings.model_name, result.version).tags:
        write_card(client, settings.model_name, result.version, run_id, result.alias,
                   result.reason, report)
    return {"model": settings.model_name, "version": result.version, "alias": result.alias,
            "reason": result.reason, "val_macro_recall": round(candidate_score, 4),
            "champion_val_macro_recall": None if champion_score is None
            else round(champion_score, 4),
            "data_version": data_version, "data_versions": versions, "run_id": run_id,
            "tracking_uri": settings.tracking_uri}
