"""Training: model, training, evaluation, MLflow registry, and the pipeline's runs and schedules."""
