"""Every manifest parses strictly into the KServe / Kubernetes SDK models; the rollout patches
turn the InferenceService into the documented canary variant and back."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from civicsense.rollout.manifests import ManifestError, merge_patch, parse_manifest
from civicsense.rollout.verbs import (
    canary_patch,
    promote_patch,
    rollback_patch,
    standard_canary_patch,
    standard_promote_patch,
    standard_rollback_patch,
)
from tests_support import ROOT

MANIFESTS = ROOT / "manifests"
BASE, EXAMPLES = MANIFESTS / "base", MANIFESTS / "examples"
# Whole objects (the overlays hold kustomizations and partial patches).
FILES = sorted(p for p in [*BASE.rglob("*.yaml"), *EXAMPLES.rglob("*.yaml")]
               if p.name != "kustomization.yaml")


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_there_are_manifests_for_every_piece():
    kinds = {(d["kind"], d["metadata"]["name"]) for path in FILES for d in docs(path)}
    assert {("ClusterServingRuntime", "civicsense-mlflow"),
            ("InferenceService", "civicsense-sentiment"), ("Secret", "civicsense-gcs"),
            ("ServiceAccount", "civicsense-serving")} <= kinds


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_manifest_parses_into_the_sdk_models(path):
    for doc in docs(path):
        model = parse_manifest(doc)
        assert type(model).__name__.endswith(doc["kind"])


def test_the_runtime_serves_mlflow_3_on_v1_and_v2():
    runtime = parse_manifest(docs(BASE / "serving" / "servingruntime.yaml")[0])
    assert [(f.name, f.version) for f in runtime.spec.supported_model_formats] == [("mlflow", "3")]
    assert set(runtime.spec.protocol_versions) == {"v1", "v2"}
    env = {e.name: e.value for e in runtime.spec.containers[0].env}
    assert env["OMP_NUM_THREADS"] == "1"


def test_the_inference_service_is_wired_for_gcs_logging_and_canaries():
    isvc = parse_manifest(docs(BASE / "serving" / "inferenceservice.yaml")[0])
    predictor = isvc.spec.predictor
    assert predictor.model.model_format.name == "mlflow"
    assert predictor.model.runtime == "civicsense-mlflow"
    assert predictor.model.storage_uri.startswith("gs://")
    assert predictor.logger.mode == "all" and predictor.logger.url
    assert predictor.service_account_name == "civicsense-serving"
    assert predictor.model.resources.limits["cpu"]
    secret_docs = docs(EXAMPLES / "storage-secret.example.yaml")
    account = parse_manifest(secret_docs[1])
    assert [s.name for s in account.secrets] == [secret_docs[0]["metadata"]["name"]]


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d["spec"]["predictor"].update(canaryTraficPercent=10), "unknown field"),
    (lambda d: d["spec"]["predictor"].update(canaryTrafficPercent="10"), "expected int"),
    (lambda d: d["spec"]["predictor"]["model"]["resources"]["limits"].update(cpu=2),
     "expected str"),
    (lambda d: d["spec"]["predictor"]["model"].update(storageURI="gs://x"), "unknown field"),
    (lambda d: d["spec"]["predictor"]["model"]["env"].append({"value": "1"}), "name"),
])
def test_the_parser_is_strict(mutate, where):
    doc = docs(BASE / "serving" / "inferenceservice.yaml")[0]
    mutate(doc)
    with pytest.raises(ManifestError, match=where):
        parse_manifest(doc)


def strip(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    doc["metadata"].pop("annotations", None)
    return doc


def test_canary_patch_makes_the_serverless_canary_variant_and_promote_rollback_undo_it():
    base = docs(BASE / "serving" / "inferenceservice.yaml")[0]
    variant = docs(EXAMPLES / "canary" / "serverless-canary.yaml")[0]
    model = variant["spec"]["predictor"]["model"]
    patch = canary_patch(model["storageUri"], "2", "RUN_ID_OF_THE_CHALLENGER", 10)
    patched = merge_patch(base, patch)
    assert strip(patched) == strip(variant)
    parse_manifest(patched)
    promoted = merge_patch(patched, promote_patch())
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert promoted["spec"]["predictor"]["model"]["storageUri"] == model["storageUri"]
    rolled_back = merge_patch(patched, rollback_patch())
    assert rolled_back["spec"]["predictor"]["canaryTrafficPercent"] == 0
    for doc in (promoted, rolled_back):
        parse_manifest(doc)


def test_standard_mode_patches_make_the_spec_canary_variant():
    variant = docs(EXAMPLES / "canary" / "standard-canary.yaml")[0]
    base = copy.deepcopy(variant)
    del base["spec"]["canary"]
    canary = variant["spec"]["canary"][0]
    patch = standard_canary_patch(base["spec"]["predictor"]["model"],
                                  canary["predictor"]["model"]["storageUri"], "2",
                                  "RUN_ID_OF_THE_CHALLENGER", 10)
    patched = merge_patch(base, patch)
    assert patched["spec"]["canary"][0]["trafficPercent"] == 10
    assert (patched["spec"]["canary"][0]["predictor"]["model"]
            == canary["predictor"]["model"])
    parse_manifest(patched)
    promoted = merge_patch(variant, standard_promote_patch(canary["predictor"]))
    assert "canary" not in promoted["spec"]
    # The main predictor takes the canary's model but keeps its own (absent) name, and the
    # canary's model.name stays behind: KServe's webhook refuses it in spec.predictor.
    assert "name" not in promoted["spec"]["predictor"]
    assert "name" not in promoted["spec"]["predictor"]["model"]
    assert promoted["spec"]["predictor"]["model"]["storageUri"] == (
        canary["predictor"]["model"]["storageUri"])
    assert merge_patch(variant, standard_rollback_patch())["spec"].get("canary") is None
    parse_manifest(promoted)


def test_the_examples_are_what_the_rollout_makes_of_the_base():
    from civicsense.rollout.patches import patched_inference_service

    base = docs(BASE / "serving" / "inferenceservice.yaml")[0]
    for mode, name in (("standard", "standard-canary.yaml"),
                       ("serverless", "serverless-canary.yaml")):
        assert docs(EXAMPLES / "canary" / name)[0] == patched_inference_service(
            base, "canary", mode)
