"""The cluster's feedback path is wired: the predictor forwards to the sink Service's
/feedback with the sink token, rollouts keep that wiring, and the sink writes gs://."""

from __future__ import annotations

from urllib.parse import urlparse

from civicsense.rollout.patches import (
    canary_patch,
    merge_patch,
    standard_canary_patch,
    standard_restore_patch,
)
from civicsense.settings import Settings


def test_the_predictor_forwards_feedback_to_the_sink_with_its_token(rendered, find,
                                                                   monkeypatch):
    for overlay, objects in rendered.items():
        isvc = find(objects, "InferenceService", "civicsense-sentiment")
        model = isvc["spec"]["predictor"]["model"]
        config_ref, secret_ref = model["envFrom"]
        config = find(objects, "ConfigMap", config_ref["configMapRef"]["name"])
        url = urlparse(config["data"]["CIVICSENSE_FEEDBACK_FORWARD_URL"])
        service = find(objects, "Service", "civicsense-monitor")
        assert url.hostname.split(".")[:2] == ["civicsense-monitor", "civicsense"], overlay
        assert url.path == "/feedback" and (url.port or 80) == service["spec"]["ports"][0][
            "port"]
        secret = find(objects, "Secret", secret_ref["secretRef"]["name"])
        assert list(secret["stringData"]) == ["token"]
        # The one key, prefixed, is what Settings reads as the sink token.
        name = secret_ref["prefix"] + "token"
        monkeypatch.setenv(name, secret["stringData"]["token"])
        assert Settings().sink_token.get_secret_value() == secret["stringData"]["token"]
        monkeypatch.delenv(name)
        monitoring = find(objects, "ConfigMap", "civicsense-monitoring")
        assert monitoring["data"]["CIVICSENSE_FEEDBACK_LOG_URI"].startswith("gs://")


def test_rollouts_keep_the_forwarding(rendered, find):
    isvc = find(rendered["local"], "InferenceService", "civicsense-sentiment")
    model = isvc["spec"]["predictor"]["model"]
    serverless = merge_patch(isvc, canary_patch("gs://b/m2", "2", "run2", 10))
    assert serverless["spec"]["predictor"]["model"]["envFrom"] == model["envFrom"]
    restored = merge_patch(isvc, standard_restore_patch("gs://b/m1", "1", "run1"))
    assert restored["spec"]["predictor"]["model"]["envFrom"] == model["envFrom"]
    canary = standard_canary_patch(model, "gs://b/m2", "2", "run2", 10)
    assert canary["spec"]["canary"][0]["predictor"]["model"]["envFrom"] == model["envFrom"]


def test_the_predictor_trusts_forwarded_headers_only_from_its_in_pod_proxies(rendered, find,
                                                                             monkeypatch):
    """The payload logger puts KServe's agent (a reverse proxy to 127.0.0.1) in front of the
    predictor in both modes, Knative's queue-proxy too in Knative mode: loopback is trusted,
    and nothing else."""
    for overlay, objects in rendered.items():
        isvc = find(objects, "InferenceService", "civicsense-sentiment")
        assert isvc["spec"]["predictor"]["logger"]["url"], overlay
        config_ref = isvc["spec"]["predictor"]["model"]["envFrom"][0]["configMapRef"]
        config = find(objects, "ConfigMap", config_ref["name"])
        monkeypatch.setenv("CIVICSENSE_TRUSTED_PROXIES", config["data"][
            "CIVICSENSE_TRUSTED_PROXIES"])
        assert Settings().trusted_proxies == ("127.0.0.1/32", "::1/128"), overlay
