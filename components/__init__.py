"""KFP v2 components of the CivicSense training pipeline: each a thin shell over one function.

| component          | wraps                                          |
| ------------------ | ---------------------------------------------- |
| `ingest_op`        | civicsense.data.merge.ingest_sources           |
| `encoder_op`       | civicsense.training.encoder_step.fit_encoder   |
| `feature_build_op` | civicsense.features.store.build_features       |
| `tune_op`          | civicsense.training.tune.tune_training_split   |
| `train_op`         | civicsense.training.train.train                |
| `evaluate_op`      | civicsense.training.evaluate.evaluate          |
| `register_op`      | civicsense.training.registry.register          |

The labeling pipelines' (pipelines/labeling.py):

| component          | wraps                                          |
| ------------------ | ---------------------------------------------- |
| `label_export_op`  | civicsense.labeling.queue.export_tasks         |
| `label_import_op`  | civicsense.labeling.snapshots.import_labels    |
"""

from civicsense.settings import DEFAULT_COMPONENT_IMAGE

# The image the cluster runs every component in (built from components/Dockerfile); the local
# runner ignores it.
COMPONENT_IMAGE = DEFAULT_COMPONENT_IMAGE
