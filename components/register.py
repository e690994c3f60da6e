"""KFP component: register the candidate in MLflow and alias it champion/challenger by the gate."""

from kfp import dsl
from kfp.dsl import Input, Model

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def register_op(
    model: Input[Model],
    data_version: str,
    candidate_score: float,
    champion_score: float,
    champion_version: str,
    margin: float,
    pipeline_run: str,
) -> str:
    """Register; returns a JSON summary (version, alias, reason, scores)."""
    import json

    from civicsense.registry import register_candidate
    from civicsense.settings import Settings
    from civicsense.tracking import configure_mlflow

    settings = Settings()
    client = configure_mlflow(settings)
    tags = {"data_version": data_version, "pipeline_run": pipeline_run,
            "val_macro_recall": f"{candidate_score:.4f}",
            "compared_with_champion": champion_version or "none"}
    result = register_candidate(
        client, settings.model_name, model.metadata["model_uri"], model.metadata["run_id"],
        candidate_score, champion_score if champion_score >= 0 else None, margin, tags)
    summary = {"model": settings.model_name, "version": result.version, "alias": result.alias,
               "reason": result.reason, "val_macro_recall": round(candidate_score, 4),
               "champion_val_macro_recall": round(champion_score, 4) if champion_score >= 0
               else None, "data_version": data_version, "run_id": model.metadata["run_id"],
               "tracking_uri": settings.tracking_uri}
    print(json.dumps(summary, indent=2))
    return json.dumps(summary)
