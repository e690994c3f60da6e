"""Features: the one featurizer (text to numbers) and the Feast feature store build."""
