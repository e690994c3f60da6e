"""KServe v0.20.0's admission webhooks, ported (civicsense.rollout.admission): every
InferenceService the project renders, documents or rolls out is admitted, and each rule refuses
a hand-written object with the webhook's own message
(inference_service_validation.go at the tag)."""

from __future__ import annotations

import copy

import pytest

from civicsense.deploy.check import EXAMPLES, Report, check_object, deployed_in, rollout_objects
from civicsense.rollout.admission import admission_problems, defaulted

NOT_ALLOWED = "the 'name' field is not allowed in standard predictor"


@pytest.fixture
def isvc(rendered, find) -> dict:
    return find(rendered["local"], "InferenceService", "civicsense-sentiment")


def test_everything_the_project_renders_or_rolls_out_is_admitted(rendered, find):
    for overlay, objects in rendered.items():
        base = find(objects, "InferenceService", "civicsense-sentiment")
        assert admission_problems(base) == [], overlay
        for step, patched in rollout_objects(base).items():
            old = deployed_in(base, step.split()[0])
            assert admission_problems(patched, old=old) == [], (overlay, step)


def test_the_documented_examples_are_admitted():
    import yaml

    for path in sorted((EXAMPLES / "canary").glob("*.yaml")):
        assert admission_problems(yaml.safe_load(path.read_text())) == [], path.name


def test_a_model_name_in_the_main_predictor_is_refused_with_the_webhooks_message(isvc):
    isvc["spec"]["predictor"]["model"]["name"] = "kserve-container"
    assert admission_problems(isvc) == [NOT_ALLOWED]
    sklearn = copy.deepcopy(isvc)
    sklearn["spec"]["predictor"] = {"sklearn": {"name": "x", "storageUri": "gs://b/m"}}
    assert admission_problems(sklearn) == [NOT_ALLOWED]


def test_check_manifests_reports_the_refusal(isvc, crd_cache):
    """The CRD schema accepts spec.predictor.model.name; only the webhook refuses it."""
    isvc["spec"]["predictor"]["model"]["name"] = "kserve-container"
    report = Report()
    check_object(isvc, "hand-written", crd_cache, report, policy=False)
    assert report.problems == ["hand-written: InferenceService/civicsense/civicsense-sentiment: "
                               f"KServe webhook: {NOT_ALLOWED}"]


def test_the_defaulter_renames_the_deprecated_modes_before_validation(isvc):
    annotations = isvc["metadata"]["annotations"]
    annotations["serving.kserve.io/deploymentMode"] = "RawDeployment"
    assert defaulted(isvc)["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == (
        "Standard")
    canaried = rollout_objects(isvc)["standard canary"]
    canaried["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] = "RawDeployment"
    assert admission_problems(canaried) == []   # RawDeployment is Standard by then
    annotations["serving.kserve.io/deploymentMode"] = "Serverless"
    running = {**isvc, "status": {"deploymentMode": "Knative"}}
    assert admission_problems(isvc, old=running) == []


def test_the_mode_recorded_in_status_cannot_change(isvc):
    knative = {**isvc, "status": {"deploymentMode": "Serverless"}}
    assert admission_problems(isvc, old=knative)[0] == (
        "update rejected: deploymentMode cannot be changed from 'Knative' to 'Standard'")


def canary(isvc: dict, **predictor) -> dict:
    obj = rollout_objects(isvc)["standard canary"]
    obj["spec"]["canary"][0]["predictor"].update(predictor)
    return obj


@pytest.mark.parametrize("change, message", [
    (lambda o: o["metadata"]["annotations"].update({
        "serving.kserve.io/deploymentMode": "Knative"}),
     "canary is only supported in Standard deployment mode"),
    (lambda o: o["spec"]["canary"][0]["predictor"].pop("name"),
     "canary[0] predictor.name is required"),
    (lambda o: o["spec"]["predictor"].update(name="v2"),
     'canary predictor.name "v2" conflicts with stable predictor name'),
    (lambda o: o["spec"]["canary"].append(copy.deepcopy(o["spec"]["canary"][0])),
     'canary predictor.name "v2" is duplicated'),
    (lambda o: o["spec"]["canary"][0]["predictor"].update(maxReplicas=2),
     'canary "v2" must not set maxReplicas (canary uses fixed replicas)'),
    (lambda o: o["spec"]["canary"][0]["predictor"].update(minReplicas=2),
     'canary "v2" minReplicas (2) must not exceed stable predictor minReplicas (1)'),
    (lambda o: o["spec"]["canary"][0].update(trafficPercent=101),
     'canary "v2" trafficPercent must be between 0 and 100, got 101'),
])
def test_each_canary_rule_refuses_with_the_webhooks_message(isvc, change, message):
    obj = canary(isvc)
    assert admission_problems(obj) == []
    change(obj)
    assert message in admission_problems(obj)


def test_the_canary_traffic_may_not_sum_over_100(isvc):
    obj = canary(isvc)
    second = copy.deepcopy(obj["spec"]["canary"][0])
    second["predictor"]["name"], second["trafficPercent"] = "v3", 95
    obj["spec"]["canary"].append(second)
    assert admission_problems(obj) == ["sum of canary trafficPercent values (105) must be <= 100"]


def test_renaming_the_main_predictor_needs_a_model_change(isvc):
    renamed = copy.deepcopy(isvc)
    renamed["spec"]["predictor"]["name"] = "v2"
    assert admission_problems(renamed, old=isvc) == [
        "predictor.name change requires a model change (e.g. storageUri)"]
    renamed["spec"]["predictor"]["model"]["storageUri"] = "gs://b/other"
    assert admission_problems(renamed, old=isvc) == []


@pytest.mark.parametrize("change, message", [
    (lambda o: o["metadata"].update(name="Civic"), 'the InferenceService "Civic" is invalid'),
    (lambda o: o["spec"]["predictor"]["model"]["env"].append(
        {"name": "PYTHONPATH", "value": "/x"}),
     'setting PYTHONPATH in container "" is not allowed for security reasons'),
    (lambda o: o["spec"]["predictor"].update(sklearn={"storageUri": "gs://b/m"}),
     "exactly one of [Name, SKLearn, XGBoost, Tensorflow, PyTorch, Triton, ONNX, HuggingFace, "
     "PMML, LightGBM, Paddle, Model, StorageUris, StorageContainerName, WorkerSpec, PodSpec] "
     "must be specified in PredictorSpec"),
    (lambda o: o["spec"]["predictor"].update(minReplicas=5),
     "'MinReplicas' cannot be greater than MaxReplicas"),
    (lambda o: o["spec"]["predictor"]["logger"].update(mode=""), "invalid logger type"),
    (lambda o: (o["metadata"]["annotations"].update({
        "serving.kserve.io/deploymentMode": "Knative"}),
        o["spec"]["predictor"].update(deploymentStrategy={"type": "Recreate"})),
     "customizing deploymentStrategy is only supported for raw deployment mode"),
])
def test_each_predictor_rule_refuses_with_the_webhooks_message(isvc, change, message):
    change(isvc)
    assert any(message in problem for problem in admission_problems(isvc)), message
