"""Rollout verbs on a real MLflow registry (SQLite) with an injected cluster: the patches sent,
the alias moves, and the failure paths where cluster and aliases must not disagree."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from civicsense.cli.app import app
from civicsense.serving.manifests import merge_patch
from civicsense.serving.rollout import KubectlCluster, RolloutError, canary, promote, rollback
from civicsense.settings import Settings
from civicsense.training.registry import CHALLENGER, CHAMPION, PREVIOUS, alias_snapshot
from tests_support import ROOT

NAME = "civicsense-sentiment"
URI = {"1": "gs://civicsense-mlflow/artifacts/1/models/m-one/artifacts",
       "2": "gs://civicsense-mlflow/artifacts/1/models/m-two/artifacts"}


class FakeCluster:
    """An InferenceService held in memory, patched by RFC 7386 merge; can be told to fail."""

    def __init__(self, isvc: dict, fail_patch: bool = False):
        self.isvc, self.fail_patch, self.patches = isvc, fail_patch, []

    def get(self, name, namespace):
        return json.loads(json.dumps(self.isvc))

    def patch(self, name, namespace, patch):
        if self.fail_patch:
            raise RuntimeError("admission webhook denied the request")
        self.patches.append(patch)
        self.isvc = merge_patch(self.isvc, patch)
        return self.isvc


def isvc(uri: str, percent: int | None) -> dict:
    predictor = {"model": {"modelFormat": {"name": "mlflow"}, "storageUri": uri}}
    if percent is not None:
        predictor["canaryTrafficPercent"] = percent
    return {"metadata": {"name": NAME}, "spec": {"predictor": predictor}}


@pytest.fixture
def registry(tmp_path, monkeypatch) -> tuple[Settings, MlflowClient]:
    """A real SQLite registry: version 1 champion, version 2 challenger, both on gs://."""
    monkeypatch.setenv("CIVICSENSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = Settings()
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    client.create_registered_model(NAME)
    for number in ("1", "2"):
        assert client.create_model_version(NAME, URI[number]).version == int(number)
    client.set_registered_model_alias(NAME, CHAMPION, "1")
    client.set_registered_model_alias(NAME, CHALLENGER, "2")
    return settings, client


def test_canary_points_the_predictor_at_the_challenger(registry):
    settings, client = registry
    cluster = FakeCluster(isvc(URI["1"], None))
    plan = canary(settings, 10, cluster=cluster, client=client)
    expected = {"spec": {"predictor": {"canaryTrafficPercent": 10, "model": {
        "storageUri": URI["2"], "env": [
            {"name": "CIVICSENSE_MODEL_VERSION", "value": "2"},
            {"name": "CIVICSENSE_MODEL_RUN_ID", "value": "none"}]}}}}
    assert cluster.patches == [expected] and plan["patch"] == expected and plan["applied"]
    assert alias_snapshot(client, NAME) == {CHAMPION: "1", CHALLENGER: "2", PREVIOUS: None}


def test_dry_runs_send_nothing(registry):
    settings, client = registry
    cluster = FakeCluster(isvc(URI["2"], 10))
    for verb in (lambda **k: canary(settings, 25, **k), lambda **k: promote(settings, **k),
                 lambda **k: rollback(settings, **k)):
        plan = verb(dry_run=True, cluster=cluster, client=client)
        assert not plan["applied"] and plan["kubectl"].startswith("kubectl -n civicsense patch")
    assert cluster.patches == []
    assert alias_snapshot(client, NAME) == {CHAMPION: "1", CHALLENGER: "2", PREVIOUS: None}


def test_promote_moves_traffic_then_aliases(registry):
    settings, client = registry
    cluster = FakeCluster(isvc(URI["2"], 10))
    plan = promote(settings, cluster=cluster, client=client)
    assert cluster.patches == [{"spec": {"predictor": {"canaryTrafficPercent": None}}}]
    assert "canaryTrafficPercent" not in cluster.isvc["spec"]["predictor"]
    assert alias_snapshot(client, NAME) == {CHAMPION: "2", CHALLENGER: None, PREVIOUS: "1"}
    assert plan["alias_moves"] == {PREVIOUS: "1", CHAMPION: "2", CHALLENGER: None}


def test_failed_cluster_patch_leaves_the_aliases(registry):
    settings, client = registry
    cluster = FakeCluster(isvc(URI["2"], 10), fail_patch=True)
    with pytest.raises(RolloutError, match="aliases not moved"):
        promote(settings, cluster=cluster, client=client)
    assert alias_snapshot(client, NAME) == {CHAMPION: "1", CHALLENGER: "2", PREVIOUS: None}


class AliasFailingClient(MlflowClient):
    """The real registry, except that moving `champion` fails (after `previous` was set)."""

    def set_registered_model_alias(self, name, alias, version):
        if alias == CHAMPION and str(version) == "2":
            raise RuntimeError("registry unavailable")
        return super().set_registered_model_alias(name, alias, version)


def test_failed_alias_move_reverts_the_patch_and_the_aliases(registry):
    settings, _ = registry
    client = AliasFailingClient(settings.tracking_uri, settings.tracking_uri)
    cluster = FakeCluster(isvc(URI["2"], 10))
    with pytest.raises(RolloutError, match="cluster patch reverted"):
        promote(settings, cluster=cluster, client=client)
    assert cluster.patches[-1] == {"spec": {"predictor": {"canaryTrafficPercent": 10}}}
    assert cluster.isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert alias_snapshot(client, NAME) == {CHAMPION: "1", CHALLENGER: "2", PREVIOUS: None}


def test_promote_refuses_when_the_cluster_does_not_serve_the_challenger(registry):
    settings, client = registry
    cluster = FakeCluster(isvc(URI["1"], None))
    with pytest.raises(RolloutError, match="rollout canary"):
        promote(settings, cluster=cluster, client=client)
    assert cluster.patches == []
    assert alias_snapshot(client, NAME)[CHAMPION] == "1"


def test_rollback_returns_traffic_and_keeps_champion(registry):
    settings, client = registry
    cluster = FakeCluster(isvc(URI["2"], 10))
    rollback(settings, cluster=cluster, client=client)
    assert cluster.patches == [{"spec": {"predictor": {"canaryTrafficPercent": 0}}}]
    assert alias_snapshot(client, NAME) == {CHAMPION: "1", CHALLENGER: "2", PREVIOUS: None}
    with pytest.raises(RolloutError, match="no canary"):
        rollback(settings, cluster=FakeCluster(isvc(URI["1"], None)), client=client)


def test_canary_needs_a_challenger_a_cluster_can_read(registry):
    settings, client = registry
    client.delete_registered_model_alias(NAME, CHALLENGER)
    with pytest.raises(RolloutError, match="no 'challenger'"):
        canary(settings, 10, cluster=FakeCluster({}), client=client)
    local = client.create_model_version(NAME, "/tmp/laptop/model")
    client.set_registered_model_alias(NAME, CHALLENGER, local.version)
    with pytest.raises(RolloutError, match="cannot read"):
        canary(settings, 10, cluster=FakeCluster({}), client=client)


def test_kubectl_cluster_runs_kubectl_patch(tmp_path):
    """The real subprocess path, with a stand-in kubectl that records its arguments."""
    log = tmp_path / "args.json"
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"#!{sys.executable}\nimport json, sys\n"
                       f"open({str(log)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
                       "print(json.dumps({'kind': 'InferenceService'}))\n")
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    cluster = KubectlCluster(context="prod", kubectl=str(kubectl))
    assert cluster.patch(NAME, "civicsense", {"spec": {"predictor": {
        "canaryTrafficPercent": 0}}}) == {"kind": "InferenceService"}
    args = json.loads(log.read_text())
    assert args[:8] == ["--context", "prod", "-n", "civicsense", "patch",
                        "inferenceservice.serving.kserve.io", NAME, "--type"]
    assert json.loads(args[args.index("-p") + 1]) == {"spec": {"predictor": {
        "canaryTrafficPercent": 0}}}
    failing = tmp_path / "kubectl-fails"
    failing.write_text("#!/bin/sh\necho 'error: the server could not find it' >&2\nexit 1\n")
    failing.chmod(failing.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(RolloutError, match="could not find"):
        KubectlCluster(kubectl=str(failing)).get(NAME, "civicsense")


def test_cli_dry_run_prints_the_patch(registry):
    result = CliRunner().invoke(app, ["rollout", "canary", "--percent", "10", "--dry-run"],
                                env={"CIVICSENSE_HOME": os.environ["CIVICSENSE_HOME"]})
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["patch"]["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert plan["patch"]["spec"]["predictor"]["model"]["storageUri"] == URI["2"]
    assert not plan["applied"]
    result = CliRunner().invoke(app, ["rollout", "canary", "--percent", "100", "--dry-run"])
    assert result.exit_code != 0


def test_serve_command_is_registered():
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--model-uri" in result.output and "0.0.0.0" in (
        result.output)
    assert ROOT.joinpath("kserve", "model_server.py").exists()


def test_serve_without_a_registered_model_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("CIVICSENSE_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 1
    assert "cannot load models:/civicsense-sentiment@champion" in result.output
