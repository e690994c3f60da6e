"""The log sink from the component image with the command its Deployment declares: KServe
logger CloudEvents → sink container → the payload log in GCS (emulator)."""

from __future__ import annotations

import time

from container_support import post_event

from civicsense.monitoring.inference_log import read_log
from civicsense.settings import Settings

TEXTS = ["Vote yes on the reform! :)", "this bill is a disaster"]


def test_the_sink_container_writes_logger_events_to_gcs(sink_container):
    container, url, gcs, token = sink_container
    request = {"instances": TEXTS}
    response = {"predictions": [
        {"label": "positive", "probabilities": {"negative": 0.1, "neutral": 0.1,
                                                "positive": 0.8}},
        {"label": "negative", "probabilities": {"negative": 0.8, "neutral": 0.1,
                                                "positive": 0.1}}], "model_version": "1+abc"}
    assert post_event(url, "ev-1", "request", request, token)["accepted"]
    assert post_event(url, "ev-1", "response", response, token)["accepted"]
    settings = Settings(inference_log_uri=f"{gcs}/inference-log")
    deadline, frame = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        frame = read_log(settings.inference_log, settings)
        if len(frame) == len(TEXTS):
            break
        time.sleep(0.5)
    assert frame is not None and frame["text"].tolist() == TEXTS
    assert set(frame["source"]) == {"sink"}
