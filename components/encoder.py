"""KFP component `encoder_op`: a thin shell over civicsense.training.encoder_step.fit_encoder."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE)
def encoder_op(
    snapshot: Input[Dataset],
    enabled: bool,
    split_method: str,
    validation_fraction: float,
    sample_size: int,
    seed: int,
    fraction: float,
    epochs: int,
    max_len: int,
    learning_rate: float,
    batch_size: int,
    data_version: str,
    pipeline_run: str,
    encoder: Output[Model],
) -> str:
    """Fine-tune the MiniLM encoder on `fraction` of the training split and export it to ONNX
    (enabled), else mark the run as encoder-free; returns the MLflow run id ("" when off).
    Cached by the snapshot and these parameters: an unchanged rerun skips the fine-tune."""
    if not enabled:
        from civicsense.features.encoder.artifact import write_disabled

        write_disabled(encoder.path)
        encoder.metadata["enabled"] = False
        return ""

    from pathlib import Path

    import pandas as pd
    from tqdm.auto import tqdm

    from civicsense.features.encoder.train import FineTuneParams
    from civicsense.settings import Settings
    from civicsense.training.encoder_step import fit_encoder

    bar = None

    def progress(step: int, total: int, loss: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="fine-tune encoder", unit="step", mininterval=2.0)
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        bar.update(1)

    result = fit_encoder(
        Settings(), pd.read_parquet(snapshot.path), Path(encoder.path),
        FineTuneParams(epochs=epochs, batch_size=batch_size, max_len=max_len,
                       learning_rate=learning_rate, seed=seed, emoji_names=True),
        fraction=fraction, split_method=split_method, validation_fraction=validation_fraction,
        sample_size=sample_size, seed=seed,
        tags={"data_version": data_version, "pipeline_run": pipeline_run}, progress=progress)
    if bar is not None:
        bar.close()
    encoder.metadata.update({
        "enabled": True, "run_id": result.run_id, "precision": result.precision,
        "holdout_macro_recall": round(result.holdout_macro_recall, 4),
        "val_macro_recall": round(result.validation_macro_recall, 4),
        "fine_tuned_posts": result.fine_tuned_posts,
        "fine_tune_seconds": round(result.fine_tune_seconds, 1),
        "texts_per_second": round(result.texts_per_second, 1)})
    return result.run_id
