"""The deployment-mode names KServe v0.20.0 reports (Knative/Standard and the deprecated
Serverless/RawDeployment), the Standard canary said to be replica-only, and the verbs refusing a
patch KServe's admission webhook would refuse, before touching anything."""

from __future__ import annotations

import pytest
from test_rollout_kubectl import URI, make_registry, make_standin, serving_isvc

from civicsense.rollout.intent import Journal
from civicsense.rollout.patches import (
    SERVERLESS,
    STANDARD,
    canary_patch_for,
    standard_canary_warning,
    standard_promote_patch,
)
from civicsense.rollout.reconcile import live_mode, traffic_split
from civicsense.rollout.verbs import KubectlCluster, RolloutError, canary, promote
from civicsense.training.registry import CHAMPION, alias_snapshot

NAME = "civicsense-sentiment"


@pytest.mark.parametrize("where", ["status", "annotation"])
@pytest.mark.parametrize("reported, mode", [("Knative", SERVERLESS), ("Serverless", SERVERLESS),
                                            ("Standard", STANDARD),
                                            ("RawDeployment", STANDARD)])
def test_live_mode_knows_the_current_and_the_deprecated_names(where, reported, mode):
    isvc = serving_isvc("standard")
    del isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"]
    if where == "status":
        isvc["status"] = {"deploymentMode": reported}
    else:
        isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] = reported
    assert live_mode(isvc) == mode


def test_live_mode_refuses_modelmesh():
    isvc = serving_isvc("standard")
    isvc["status"] = {"deploymentMode": "ModelMesh"}
    with pytest.raises(RolloutError, match="ModelMesh has no canary rollout"):
        live_mode(isvc)


def cluster(tmp_path, monkeypatch, isvc):
    standin = make_standin(tmp_path / "kubectl", isvc, monkeypatch)
    return standin, KubectlCluster(kubectl=str(standin.kubectl), timeout=20)


def test_a_knative_service_refuses_the_standard_form(tmp_path, monkeypatch):
    """KServe >= 0.16 reports Knative in status: the rollout reads it as serverless."""
    settings, client = make_registry(tmp_path, monkeypatch)
    isvc = serving_isvc("serverless")
    isvc["status"] = {"deploymentMode": "Knative"}
    standin, kubectl = cluster(tmp_path, monkeypatch, isvc)
    with pytest.raises(RolloutError, match="runs in serverless mode"):
        canary(settings, 10, mode="standard", cluster=kubectl, client=client)
    plan = canary(settings, 10, mode="serverless", cluster=kubectl, client=client)
    assert plan["applied"] and standin.isvc()["spec"]["predictor"]["canaryTrafficPercent"] == 10


def test_the_standard_canary_is_said_to_be_replica_only():
    base = serving_isvc("standard")
    patch = canary_patch_for(base, STANDARD, URI["2"], "2", "r2", 10)
    entry, = patch["spec"]["canary"]
    assert entry["trafficPercent"] == 10 and entry["predictor"]["name"] == "v2"
    warning = standard_canary_warning(NAME, "v2", 10)
    assert "0% to the canary" in warning and f"{NAME}-v2-predictor" in warning
    assert "--mode serverless" in warning
    split = traffic_split({**base, "spec": {**base["spec"], **patch["spec"]}}, STANDARD, {})
    assert [(t["role"], t["percent"]) for t in split] == [
        ("predictor (default)", 100), ("canary v2 (replica-only)", 0)]
    assert split[1]["trafficPercent"] == 10


def test_standard_promote_never_moves_a_model_name_into_the_main_predictor():
    canary_predictor = {"name": "v2", "model": {"name": "kserve-container", "storageUri": URI["2"],
                                                "env": [{"name": "A", "value": "1"}]}}
    patch = standard_promote_patch(canary_predictor)
    assert patch == {"spec": {"canary": None, "predictor": {"model": {
        "storageUri": URI["2"], "env": [{"name": "A", "value": "1"}]}}}}


def test_a_patch_the_webhook_would_refuse_is_refused_before_anything_changes(tmp_path,
                                                                             monkeypatch):
    """A live object carrying spec.predictor.model.name (applied before KServe's webhook, or
    edited by hand): every update of it would be refused, so the verb says so and does
    nothing."""
    settings, client = make_registry(tmp_path, monkeypatch)
    isvc = serving_isvc("standard")
    isvc["spec"]["predictor"]["model"]["name"] = "kserve-container"
    standin, kubectl = cluster(tmp_path, monkeypatch, isvc)
    with pytest.raises(RolloutError, match="KServe's admission webhook would refuse the canary "
                       "patch: the 'name' field is not allowed in standard predictor"):
        canary(settings, 10, cluster=kubectl, client=client)
    with pytest.raises(RolloutError, match="rollout canary"):
        promote(settings, cluster=kubectl, client=client)
    assert standin.patches() == [] and Journal.under(settings.home_dir).records() == []
    assert alias_snapshot(client, NAME)[CHAMPION] == "1"
