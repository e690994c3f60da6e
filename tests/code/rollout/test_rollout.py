"""Rollout verbs in both KServe modes on a real MLflow registry (SQLite) and the stand-in kubectl:
the objects they make (valid for KServe's released CRD), the alias moves, the intent journal,
status and its agreement check, and the CLI."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from test_rollout_kubectl import URI, make_registry, make_standin, serving_isvc
from typer.testing import CliRunner

from civicsense.cli.app import app
from civicsense.rollout.admission import admission_problems
from civicsense.rollout.intent import Journal
from civicsense.rollout.kserve_names import predictor_services
from civicsense.rollout.verbs import (
    INTENT_ANNOTATION,
    RolloutError,
    canary,
    patched_inference_service,
    promote,
    rollback,
    rollout_status,
)
from civicsense.training.registry import CHALLENGER, CHAMPION, PREVIOUS, alias_snapshot
from tests_support import ROOT

NAME = "civicsense-sentiment"
CRD = ROOT.parent / "shared" / "k8s" / "kserve-v0.20.0" / "serving.kserve.io_inferenceservices.yaml"
MODES = ("standard", "serverless")


def strict(schema: dict) -> dict:
    """The CRD schema with unknown fields rejected, as kubectl's strict field validation does."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    elif isinstance(schema, list):
        schema = [strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def crd_validator():
    if not CRD.exists():
        pytest.skip(f"KServe's CRD is not beside the repository ({CRD})")
    crd = yaml.safe_load(CRD.read_text())
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema = strict(schema["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def errors(validator, obj: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]


@pytest.fixture
def registry(tmp_path, monkeypatch):
    return make_registry(tmp_path, monkeypatch)


def cluster_for(tmp_path, monkeypatch, isvc):
    from civicsense.rollout.verbs import KubectlCluster

    standin = make_standin(tmp_path / "kubectl", isvc, monkeypatch)
    return standin, KubectlCluster(kubectl=str(standin.kubectl), timeout=20)


# ---------------------------------------------------------------- the objects (pure)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", ["canary", "promote", "rollback"])
def test_every_patched_object_is_valid_for_kserves_crd(crd_validator, action, mode):
    base = serving_isvc(mode)
    patched = patched_inference_service(base, action, mode, storage_uri=URI["2"], version="2",
                                        run_id="r2", percent=10)
    assert errors(crd_validator, patched) == []
    assert admission_problems(patched, old=base) == []
    spec = patched["spec"]
    assert "name" not in spec["predictor"]["model"]   # KServe's webhook refuses it there
    if mode == "standard":
        expected_main = {"canary": "1", "promote": "2", "rollback": "1"}[action]
        assert spec["predictor"]["model"]["env"][0]["value"] == expected_main
        if action == "canary":
            (entry,) = spec["canary"]
            assert entry["trafficPercent"] == 10
            assert entry["predictor"]["name"] == "v2"
            assert entry["predictor"]["model"]["name"] == "kserve-container"
            assert entry["predictor"]["model"]["storageUri"] == URI["2"]
            assert entry["predictor"]["serviceAccountName"] == "civicsense-serving"
        else:
            assert "canary" not in spec
        if action == "promote":   # the canary's model, under the main predictor's own name
            assert "name" not in spec["predictor"] and spec["predictor"]["maxReplicas"] == 4
            assert spec["predictor"]["model"]["storageUri"] == URI["2"]
    else:
        assert spec["predictor"].get("canaryTrafficPercent") == {
            "canary": 10, "promote": None, "rollback": 0}[action]
        assert spec["predictor"]["model"]["storageUri"] == URI["2"]


def test_the_crd_check_catches_the_old_standard_canary(crd_validator):
    patched = patched_inference_service(serving_isvc("standard"), "canary", "standard")
    del patched["spec"]["canary"][0]["predictor"]["model"]["name"]
    assert any("'name' is a required property" in e for e in errors(crd_validator, patched))
    patched["spec"]["predictor"]["canaryTraficPercent"] = 10
    assert any("canaryTraficPercent" in e for e in errors(crd_validator, patched))


@pytest.mark.parametrize("mode", MODES)
def test_rollback_after_a_promotion_serves_the_previous_version(crd_validator, mode):
    promoted = patched_inference_service(serving_isvc(mode), "promote", mode)
    back = patched_inference_service(promoted, "rollback", mode, previous_uri=URI["1"],
                                     previous_version="1")
    assert errors(crd_validator, back) == []
    assert back["spec"]["predictor"]["model"]["storageUri"] == URI["1"]
    assert "canaryTrafficPercent" not in back["spec"]["predictor"] and "canary" not in back["spec"]


def test_patched_inference_service_refuses_what_it_does_not_know():
    with pytest.raises(RolloutError, match="mode must be"):
        patched_inference_service(serving_isvc("standard"), "canary", "modelmesh")
    with pytest.raises(RolloutError, match="action must be"):
        patched_inference_service(serving_isvc("standard"), "delete", "standard")
    with pytest.raises(RolloutError, match="between 1 and 99"):
        patched_inference_service(serving_isvc("standard"), "canary", "standard", percent=100)


# ---------------------------------------------------------------- the verbs


@pytest.mark.parametrize("mode", MODES)
def test_canary_promote_then_rollback_keep_traffic_and_aliases_together(
        registry, tmp_path, monkeypatch, crd_validator, mode):
    settings, client = registry
    standin, cluster = cluster_for(tmp_path, monkeypatch, serving_isvc(mode))
    plan = canary(settings, 10, mode=mode, cluster=cluster, client=client)
    assert plan["applied"] and plan["alias_moves"] == {}
    live = standin.isvc()
    assert errors(crd_validator, live) == []
    assert INTENT_ANNOTATION not in live["metadata"]["annotations"]
    # Intent recorded on the object before the spec patch, cleared after.
    patches = standin.patches()
    assert list(patches[0]) == ["metadata"] and "spec" in patches[1]
    assert patches[-1] == {"metadata": {"annotations": {INTENT_ANNOTATION: None}}}
    report = rollout_status(settings, cluster=cluster, client=client)
    assert report["agree"], report["problems"]
    # Knative splits the traffic; a Standard canary gets replicas and 0% (KServe v0.20.0).
    assert [t["percent"] for t in report["traffic"]] == (
        [90, 10] if mode == "serverless" else [100, 0])
    assert report["traffic"][1]["version"] == "2"
    assert ("warning" in plan) == (mode == "standard")

    promote(settings, cluster=cluster, client=client)
    assert alias_snapshot(client, NAME) == {CHAMPION: "2", CHALLENGER: None, PREVIOUS: "1"}
    report = rollout_status(settings, cluster=cluster, client=client)
    assert report["agree"] and [(t["version"], t["percent"]) for t in report["traffic"]] == [
        ("2", 100)]
    assert errors(crd_validator, standin.isvc()) == []

    rollback(settings, cluster=cluster, client=client)
    assert alias_snapshot(client, NAME) == {CHAMPION: "1", CHALLENGER: None, PREVIOUS: None}
    assert standin.isvc()["spec"]["predictor"]["model"]["storageUri"] == URI["1"]
    assert rollout_status(settings, cluster=cluster, client=client)["agree"]
    events = [r["event"] for r in Journal.under(settings.home_dir).records()]
    assert events == ["intent", "done"] * 3


@pytest.mark.parametrize("mode", MODES)
def test_rollback_during_a_canary_takes_its_traffic_away(registry, tmp_path, monkeypatch, mode):
    settings, client = registry
    standin, cluster = cluster_for(tmp_path, monkeypatch, serving_isvc(mode))
    canary(settings, 25, mode=mode, cluster=cluster, client=client)
    rollback(settings, cluster=cluster, client=client)
    spec = standin.isvc()["spec"]
    if mode == "standard":
        assert "canary" not in spec and spec["predictor"]["model"]["storageUri"] == URI["1"]
    else:
        assert spec["predictor"]["canaryTrafficPercent"] == 0
        with pytest.raises(RolloutError, match="already rolled back"):
            rollback(settings, cluster=cluster, client=client)
    assert alias_snapshot(client, NAME) == {CHAMPION: "1", CHALLENGER: "2", PREVIOUS: None}
    assert rollout_status(settings, cluster=cluster, client=client)["agree"]


def test_dry_runs_send_nothing(registry, tmp_path, monkeypatch):
    settings, client = registry
    isvc = patched_inference_service(serving_isvc("standard"), "canary", "standard",
                                     storage_uri=URI["2"], version="2", run_id="none")
    standin, cluster = cluster_for(tmp_path, monkeypatch, isvc)
    for verb in (lambda **k: canary(settings, 25, **k), lambda **k: promote(settings, **k),
                 lambda **k: rollback(settings, **k)):
        plan = verb(dry_run=True, cluster=cluster, client=client)
        assert not plan["applied"] and plan["kubectl"].startswith("kubectl -n civicsense patch")
    assert standin.patches() == [] and Journal.under(settings.home_dir).records() == []
    assert alias_snapshot(client, NAME) == {CHAMPION: "1", CHALLENGER: "2", PREVIOUS: None}


def test_canary_refuses_a_mode_the_service_does_not_run_in(registry, tmp_path, monkeypatch):
    settings, client = registry
    standin, cluster = cluster_for(tmp_path, monkeypatch, serving_isvc("standard"))
    with pytest.raises(RolloutError, match="runs in standard mode"):
        canary(settings, 10, mode="serverless", cluster=cluster, client=client)
    assert standin.patches() == []


def test_promote_refuses_when_the_canary_is_not_the_challenger(registry, tmp_path, monkeypatch):
    settings, client = registry
    standin, cluster = cluster_for(tmp_path, monkeypatch, serving_isvc("standard"))
    with pytest.raises(RolloutError, match="rollout canary"):
        promote(settings, cluster=cluster, client=client)
    client.set_registered_model_alias(NAME, CHALLENGER, "3")
    standin.set_isvc(patched_inference_service(serving_isvc("standard"), "canary", "standard",
                                               storage_uri=URI["2"], version="2"))
    with pytest.raises(RolloutError, match="serves version 2, not the challenger"):
        promote(settings, cluster=cluster, client=client)
    assert standin.patches() == [] and alias_snapshot(client, NAME)[CHAMPION] == "1"


def test_canary_needs_a_challenger_a_cluster_can_read(registry, tmp_path, monkeypatch):
    settings, client = registry
    _, cluster = cluster_for(tmp_path, monkeypatch, serving_isvc("standard"))
    client.delete_registered_model_alias(NAME, CHALLENGER)
    with pytest.raises(RolloutError, match="no 'challenger'"):
        canary(settings, 10, cluster=cluster, client=client)
    local = client.create_model_version(NAME, "/tmp/laptop/model")
    client.set_registered_model_alias(NAME, CHALLENGER, local.version)
    with pytest.raises(RolloutError, match="cannot read"):
        canary(settings, 10, cluster=cluster, client=client)


def test_status_says_when_traffic_and_aliases_disagree(registry, tmp_path, monkeypatch):
    settings, client = registry
    promoted = patched_inference_service(serving_isvc("serverless"), "promote", "serverless",
                                         storage_uri=URI["2"], version="2")
    _, cluster = cluster_for(tmp_path, monkeypatch, promoted)
    report = rollout_status(settings, cluster=cluster, client=client)
    assert not report["agree"]
    assert report["problems"] == ["all traffic goes to version 2 but 'champion' is 1"]


# ---------------------------------------------------------------- the CLI


def cli(args: list[str], env: dict | None = None):
    return CliRunner().invoke(app, ["rollout", *args], env=env)


def test_cli_drives_both_canary_forms_and_status(registry, tmp_path, monkeypatch):
    standin = make_standin(tmp_path / "kubectl", serving_isvc("standard"), monkeypatch)
    dry = cli(["canary", "--percent", "10", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)   # the warning goes to stderr
    assert plan["mode"] == "standard" and not plan["applied"]
    assert "warning: Standard mode is replica-only" in dry.stderr
    assert plan["patch"]["spec"]["canary"][0]["predictor"]["model"]["storageUri"] == URI["2"]
    assert cli(["canary", "--mode", "serverless"]).exit_code == 1
    assert cli(["canary", "--mode", "knative"]).exit_code == 2
    assert cli(["canary", "--percent", "100"]).exit_code == 2
    done = cli(["canary", "--percent", "20"])
    assert done.exit_code == 0, done.output
    shown = cli(["status"])
    assert shown.exit_code == 0, shown.output
    assert ("predictor (default): version 1 100% | canary v2 (replica-only): version 2 0%"
            in shown.output)
    assert "champion=1 challenger=2 previous=-" in shown.output and "agree: yes" in shown.output
    # Someone moves champion by hand: status says so, exit 1.
    _, client = registry
    client.set_registered_model_alias(NAME, CHAMPION, "3")
    shown = cli(["status", "--json"])
    assert shown.exit_code == 1
    assert json.loads(shown.stdout)["problems"] == [
        "the main predictor serves version 1 but 'champion' is 3"]
    client.set_registered_model_alias(NAME, CHAMPION, "1")
    standin.set_isvc(serving_isvc("serverless"))
    assert cli(["canary", "--mode", "serverless", "--percent", "5"]).exit_code == 0
    assert standin.isvc()["spec"]["predictor"]["canaryTrafficPercent"] == 5


def test_rollout_help_lists_every_verb():
    result = cli(["--help"])
    assert result.exit_code == 0
    for verb in ("canary", "promote", "rollback", "status", "reconcile"):
        assert verb in result.output


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



def test_a_canary_never_shares_the_main_predictors_name(crd_validator):
    """KServe refuses a canary named like the stable predictor (validation.go:212-214): an
    object whose main predictor is named v2 (by hand) gets a canary of version 2 named
    v2-canary."""
    named = serving_isvc("standard")
    named["spec"]["predictor"]["name"] = "v2"
    again = patched_inference_service(named, "canary", "standard", storage_uri=URI["2"])
    assert again["spec"]["canary"][0]["predictor"]["name"] == "v2-canary"
    assert errors(crd_validator, again) == [] and admission_problems(again, old=named) == []


def test_the_main_service_keeps_its_name_through_every_step():
    """What the bring-up's port-forward and the extension's docs rely on."""
    base = serving_isvc("standard")
    canaried = patched_inference_service(base, "canary", "standard")
    promoted = patched_inference_service(base, "promote", "standard")
    back = patched_inference_service(promoted, "rollback", "standard", previous_uri=URI["1"])
    assert predictor_services(canaried) == {"main": f"{NAME}-predictor",
                                            "canary v2": f"{NAME}-v2-predictor"}
    for obj in (base, promoted, back):
        assert predictor_services(obj) == {"main": f"{NAME}-predictor"}


def test_the_journal_survives_a_torn_last_line(tmp_path):
    from civicsense.rollout.intent import Intent

    journal = Journal.under(tmp_path)
    first = Intent("canary", "standard", NAME, "civicsense", {"spec": {}}, {}, "version 2 at 10%")
    journal.begin(first)
    with journal.path.open("a") as out:
        out.write('{"event": "done", "id": "' + first.id[:4])  # killed mid-write
    assert journal.pending(NAME, "civicsense") == first
    journal.finish(first.id)
    assert journal.pending(NAME, "civicsense") is None and journal.finished(first.id)
    assert journal.pending("another-model", "civicsense") is None
    assert journal.path.read_text().count("\n\n") == 0  # only the torn line was ended
