"""CivicSense pipelines."""
