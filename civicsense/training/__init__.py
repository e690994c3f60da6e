"""Training: model, training, tuning, evaluation, quality reports and the MLflow registry."""
