"""KFP component `register_op`: a thin shell over civicsense.training.registry.register."""

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
    data_versions: str = "[]",
) -> str:
    """Register; returns a JSON summary (version, alias, reason, scores). `data_versions`: the
    JSON list of every source's data version (ingest's output of that name)."""
    import json

    from civicsense.settings import Settings
    from civicsense.training.registry import register

    summary = register(Settings(), model.metadata["model_uri"], model.metadata["run_id"],
                       data_version, candidate_score,
                       champion_score if champion_score >= 0 else None, champion_version,
                       margin, pipeline_run, data_versions=json.loads(data_versions))
    return json.dumps(summary)
