"""KFP component `feature_build_op`: a thin shell over civicsense.features.store.build_features."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def feature_build_op(
    snapshot: Input[Dataset],
    encoder: Input[Model],
    split_method: str,
    validation_fraction: float,
    sample_size: int,
    seed: int,
    entities: Output[Dataset],
    featurizer: Output[Model],
):
    """Featurize the snapshot into Feast (with the encoder step's encoder, when it has one);
    output labelled entity rows and the fitted featurizer."""
    import joblib
    import pandas as pd

    from civicsense.features.encoder.artifact import read_artifact
    from civicsense.features.store import build_features
    from civicsense.settings import Settings

    build = build_features(pd.read_parquet(snapshot.path), Settings(), split_method,
                           validation_fraction, sample_size, seed, read_artifact(encoder.path))
    build.entities.to_parquet(entities.path, index=False)
    joblib.dump(build.featurizer, featurizer.path, compress=3)
    counts = build.entities["split"].value_counts()
    entities.metadata.update({"train_rows": int(counts.get("train", 0)),
                              "encoder_rows": int(counts.get("encoder", 0)),
                              "validation_rows": int(counts.get("validation", 0)),
                              "features": str(build.features_path)})
