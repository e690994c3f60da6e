"""Register: a model version per trained candidate, aliased champion or challenger by a gate."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CHAMPION, CHALLENGER = "champion", "challenger"
# Scores are means of recalls: 0.61 - 0.60 must not count as beating a 0.01 margin.
FLOAT_TOLERANCE = 1e-9


@dataclass
class Registration:
    version: str
    alias: str | None
    reason: str


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points to, or None when the model or alias does not exist."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


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
) -> Registration:
    """Register (once per training run) and alias the candidate as the gate decides."""
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
    import mlflow

    version = mlflow.register_model(model_uri, name, tags=tags)
    alias, reason = gate(candidate_score, champion_score, margin)
    client.set_model_version_tag(name, version.version, "gate", reason)
    if alias is not None:
        client.set_registered_model_alias(name, alias, version.version)
    return Registration(str(version.version), alias, reason)
