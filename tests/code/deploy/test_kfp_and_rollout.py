"""The KFP documents parse strictly (protobuf for the pipeline, the API models for the recurring
run, its parameters against the pipeline's inputs); every object the rollout produces from each
overlay's InferenceService passes KServe's schema; and check_manifests puts it all together."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from civicsense.deploy.check import (
    COMPILED_PIPELINE,
    RECURRING_RUN,
    check_manifests,
    patched_inference_service,
    rollout_objects,
)
from civicsense.deploy.kfp_specs import KfpSpecError, check_recurring_run, parse_pipeline
from civicsense.deploy.validate import InvalidObject, validate_object


def test_the_compiled_pipeline_parses_strictly():
    spec, platform = parse_pipeline(COMPILED_PIPELINE)
    assert spec.pipeline_info.name == "civicsense-training"
    assert "kubernetes" in platform.platforms
    assert set(spec.root.input_definitions.parameters) >= {"data_source", "gate_margin"}


def test_an_unknown_field_in_the_compiled_pipeline_is_an_error(tmp_path):
    docs = list(yaml.safe_load_all(COMPILED_PIPELINE.read_text()))
    docs[0]["root"]["dagg"] = {}
    broken = tmp_path / "p.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    with pytest.raises(KfpSpecError, match='no field named "dagg"'):
        parse_pipeline(broken)


@pytest.fixture(scope="module")
def recurring():
    return json.loads(RECURRING_RUN.read_text()), parse_pipeline(COMPILED_PIPELINE)[0]


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b["trigger"]["cron_schedule"].update(cronn="x"),
     r"cron_schedule: unknown field\(s\) \['cronn'\]"),
    (lambda b: b.update(mode="ON"), "mode: \"ON\" is not one of"),
    (lambda b: b["runtime_config"]["parameters"].update(max_depth="4"),
     'max_depth: "4" is not NUMBER_INTEGER'),
    (lambda b: b["runtime_config"]["parameters"].update(depth=4), "depth: the pipeline has no"),
    (lambda b: b["runtime_config"]["parameters"].pop("data_source"),
     r"\['data_source'\] Required value"),
    (lambda b: b["trigger"]["cron_schedule"].update(cron="0 3 * * *"), "seconds first"),
    (lambda b: b.update(no_catchup="yes"), 'no_catchup: expected bool, got "yes"'),
])
def test_a_broken_recurring_run_is_refused(recurring, mutate, message):
    body, spec = recurring
    check_recurring_run(body, spec)
    body = copy.deepcopy(body)
    mutate(body)
    with pytest.raises(KfpSpecError, match=message):
        check_recurring_run(body, spec)


@pytest.mark.parametrize("overlay", ["local", "gke"])
def test_every_rollout_object_passes_kserves_schema(rendered, find, crd_cache, overlay):
    isvc = find(rendered[overlay], "InferenceService", "civicsense-sentiment")
    objects = rollout_objects(isvc)
    assert sorted(objects) == sorted(f"{m} {a}" for m in ("standard", "serverless")
                                     for a in ("canary", "promote", "rollback"))
    for obj in objects.values():
        assert validate_object(obj, crd_cache) == "kserve CRD"
    standard, serverless = objects["standard canary"], objects["serverless canary"]
    canary, = standard["spec"]["canary"]
    assert canary["trafficPercent"] == 10 and canary["predictor"]["model"]["name"]
    assert "canary" not in objects["standard rollback"]["spec"]
    promoted = objects["standard promote"]["spec"]["predictor"]
    assert "name" not in promoted and "name" not in promoted["model"]   # KServe's webhook
    assert promoted["model"]["storageUri"] == canary["predictor"]["model"]["storageUri"]
    assert serverless["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert "canaryTrafficPercent" not in objects["serverless promote"]["spec"]["predictor"]
    assert objects["serverless rollback"]["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_a_rollout_object_that_breaks_the_schema_would_be_caught(rendered, find, crd_cache):
    """The old bug, replayed: a Standard canary without model.name is one the API server
    rejects, and the check says so."""
    isvc = find(rendered["local"], "InferenceService", "civicsense-sentiment")
    canary = patched_inference_service(isvc, "canary", "standard")
    del canary["spec"]["canary"][0]["predictor"]["model"]["name"]
    with pytest.raises(InvalidObject, match=r"spec.canary\[0\].predictor.model.name: Required"):
        validate_object(canary, crd_cache)


def test_check_manifests_covers_every_overlay_the_examples_and_kfp(crd_cache):
    report = check_manifests(crd_cache)
    assert report.ok, report.problems
    sources = {source for source, _, _ in report.checked}
    assert {"overlay local", "overlay gke", "overlay local rollout standard canary",
            "overlay gke rollout serverless rollback", "pipelines/civicsense_training.yaml",
            "manifests/kfp/recurring-run.json",
            "manifests/examples/canary/standard-canary.yaml",
            "pipelines/civicsense_label_export.yaml", "pipelines/civicsense_label_import.yaml",
            "manifests/kfp/label-export-recurring-run.json", "the bring-up and the docs"} <= sources
    assert len(report.checked) >= 60
    isvcs = [schema for _, name, schema in report.checked if "InferenceService/" in name]
    assert len(isvcs) == 16 and set(isvcs) == {"kserve CRD + KServe webhooks"}
