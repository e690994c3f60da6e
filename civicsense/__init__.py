"""CivicSense: sentiment on social reforms, from a KFP pipeline to a KServe endpoint."""

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
MODEL_NAME = "civicsense-sentiment"

__version__ = "0.1.0"
