"""Monitoring: payload log and sink, Evidently drift check, retraining trigger, replay."""
