"""The served model: featurizer + XGBoost booster, as a plain predictor and as an MLflow pyfunc."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import joblib
import mlflow.pyfunc
import numpy as np
import pandas as pd
import xgboost as xgb

from civicsense import LABELS, PROBABILITY_COLUMNS
from civicsense.features.featurizer import DESCRIPTOR_NAMES, Featurizer


class SentimentPredictor:
    """Texts in, label probabilities out, whole batches at once."""

    def __init__(self, featurizer: Featurizer, booster: xgb.Booster):
        self.featurizer = featurizer
        self.booster = booster

    @classmethod
    def load(cls, featurizer_path: str | Path, booster_path: str | Path) -> SentimentPredictor:
        booster = xgb.Booster()
        booster.load_model(str(booster_path))
        return cls(joblib.load(featurizer_path), booster)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.score(texts)[0]

    def score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Featurize the texts once: their class probabilities ([n, 3]) and their descriptors
        ([n, len(DESCRIPTOR_NAMES)], which the server logs beside each prediction)."""
        features = self.featurizer.transform(list(texts))
        return self.predict_features(features), features[list(DESCRIPTOR_NAMES)].to_numpy()

    def predict_features(self, features: pd.DataFrame) -> np.ndarray:
        """Probabilities from already computed features."""
        matrix = xgb.DMatrix(features.to_numpy(np.float32), feature_names=list(features.columns))
        return self.booster.predict(matrix).reshape(len(features), len(LABELS))

    def predict_frame(self, texts: Sequence[str]) -> pd.DataFrame:
        probabilities = self.predict_proba(texts)
        frame = pd.DataFrame(probabilities, columns=list(PROBABILITY_COLUMNS))
        frame.insert(0, "label", np.asarray(LABELS, dtype=object)[probabilities.argmax(axis=1)])
        return frame


class SentimentModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: a DataFrame with a `text` column in, label and p_* columns out."""

    def load_context(self, context) -> None:
        self.predictor = SentimentPredictor.load(
            context.artifacts["featurizer"], context.artifacts["booster"]
        )

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            if "text" not in model_input.columns:
                raise ValueError("input needs a 'text' column")
            texts = model_input["text"].astype(str).tolist()
        else:
            texts = [str(text) for text in model_input]
        return self.predictor.predict_frame(texts)
