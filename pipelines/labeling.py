"""The labeling pipelines on a cluster: export the labeling queue as Label Studio tasks, and
import an annotated export as a labelled snapshot (on the same state PVC the training reads)."""

from kfp import dsl

from components.label_export import label_export_op
from components.label_import import label_import_op
from pipelines.training import _on_cluster

EXPORT_PIPELINE_NAME, IMPORT_PIPELINE_NAME = "civicsense-label-export", "civicsense-label-import"


@dsl.pipeline(name=EXPORT_PIPELINE_NAME, description="Pick the posts to label (uncertainty or "
              "random, plus every post with user feedback) as Label Studio tasks.")
def label_export_pipeline(budget: int = 500, strategy: str = "uncertainty", seed: int = 0) -> str:
    exported = _on_cluster(label_export_op(budget=budget, strategy=strategy, seed=seed))
    # The queue reads the payload and feedback logs as they are now: never a cached answer.
    exported.set_display_name("label export").set_caching_options(False)
    return exported.outputs["Output"]


@dsl.pipeline(name=IMPORT_PIPELINE_NAME, description="Import a Label Studio JSON export as a "
              "labelled snapshot that the next retraining run merges after the base data.")
def label_import_pipeline(export_file: str) -> str:
    imported = _on_cluster(label_import_op(export_file=export_file))
    imported.set_display_name("label import").set_caching_options(False)
    return imported.output
