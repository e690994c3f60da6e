"""The sink's token rules (civicsense.monitoring.sink_auth): never the manifests' placeholder,
never empty beyond loopback, never in a URL; KServe's logger events by their CloudEvent
attributes from an allowed InferenceService only."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from civicsense.monitoring.sink import create_app
from civicsense.monitoring.sink_auth import (
    TOKEN_PLACEHOLDER,
    SinkConfigError,
    from_allowed_logger,
    logger_sources,
    token_problem,
)
from civicsense.serving.feedback import install_feedback_route
from civicsense.settings import Settings

MANIFEST_SECRET = "manifests/base/monitoring/sink-token.yaml"


def test_the_placeholder_is_the_one_the_manifests_ship():
    from civicsense.settings import PROJECT_ROOT
    assert f"token: {TOKEN_PLACEHOLDER}" in (PROJECT_ROOT / MANIFEST_SECRET).read_text()


@pytest.mark.parametrize(("token", "host", "refused"), [
    (TOKEN_PLACEHOLDER, "127.0.0.1", True), (f" {TOKEN_PLACEHOLDER}\n", "0.0.0.0", True),
    ("", "0.0.0.0", True), ("  ", None, True), ("", "127.0.0.1", False),
    (None, "0.0.0.0", False), ("a" * 40, "0.0.0.0", False)])
def test_token_problem(token, host, refused):
    assert bool(token_problem(token, host)) is refused


@pytest.mark.parametrize("token", [TOKEN_PLACEHOLDER, ""])
def test_the_sink_will_not_start_with_it(tmp_path, token):
    settings = Settings(home=tmp_path, sink_token=SecretStr(token))
    with pytest.raises(SinkConfigError) as caught:
        create_app(settings)
    assert caught.value.code.startswith("civicsense: CIVICSENSE_SINK_TOKEN is")
    assert "\n" not in caught.value.code


def test_nor_the_model_servers_feedback_forward(tmp_path):
    settings = Settings(home=tmp_path, sink_token=SecretStr(TOKEN_PLACEHOLDER),
                        feedback_forward_url="http://civicsense-monitor/feedback")
    with pytest.raises(SinkConfigError):
        install_feedback_route(FastAPI(), None, settings)
    install_feedback_route(FastAPI(), None, settings.model_copy(
        update={"sink_token": SecretStr("b" * 40)}))


def test_logger_sources_and_attributes():
    sources = logger_sources(" civicsense/civicsense-sentiment, bad, /x, ns/ ")
    assert sources == {("civicsense", "civicsense-sentiment")}
    good = {"ce-specversion": "1.0", "ce-source": "http://localhost:9081/",
            "ce-namespace": "civicsense", "ce-inferenceservicename": "civicsense-sentiment"}
    assert from_allowed_logger(good, sources)
    assert not from_allowed_logger(good, frozenset())
    assert not from_allowed_logger(good | {"ce-inferenceservicename": "x"}, sources)
