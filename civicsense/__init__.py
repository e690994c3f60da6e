"""CivicSense: sentiment on social reforms, from a KFP pipeline to a KServe endpoint."""

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
# The model's class-probability columns, in LABELS order (pyfunc output, payload log, reference).
PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"p_{label}" for label in LABELS)

__version__ = "0.1.0"
