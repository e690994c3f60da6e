"""Orchestration: the KFP pipeline run locally or in Docker, compiled, submitted, scheduled."""
