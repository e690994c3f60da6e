"""Objects are checked as a kube-apiserver with KServe's CRDs and strict field validation would:
the rendered overlays pass, and a missing required field, a wrong type, an unknown field or an
unkeyed port fails with the schema's message, named by its path."""

from __future__ import annotations

import pytest
import yaml

from civicsense.deploy.crds import SHARED_CRDS, CrdError, fetch_crds, strict_schema
from civicsense.deploy.validate import InvalidObject, validate_object
from civicsense.deploy.versions import KSERVE_CRD_SHA256


def test_every_object_of_every_overlay_passes_its_schema(rendered, crd_cache):
    schemas = {}
    for objects in rendered.values():
        for obj in objects:
            schemas[obj["kind"]] = validate_object(obj, crd_cache)
    assert schemas["InferenceService"] == schemas["ClusterServingRuntime"] == "kserve CRD"
    assert schemas["Deployment"] == schemas["CronJob"] == "kubernetes 1.33"
    assert {"NetworkPolicy", "Role", "RoleBinding", "Secret", "Service"} <= set(schemas)


def _problems(obj, crd_cache) -> str:
    with pytest.raises(InvalidObject) as caught:
        validate_object(obj, crd_cache)
    return "\n".join(caught.value.problems)


@pytest.fixture
def isvc(rendered, find) -> dict:
    return find(rendered["local"], "InferenceService", "civicsense-sentiment")


def test_the_standard_canary_without_a_model_name_is_rejected_as_the_api_server_does(
        isvc, crd_cache):
    obj = isvc
    model = {k: v for k, v in obj["spec"]["predictor"]["model"].items() if k != "name"}
    obj["spec"]["canary"] = [{"trafficPercent": 10,
                              "predictor": {"name": "challenger", "model": model}}]
    assert _problems(obj, crd_cache) == "spec.canary[0].predictor.model.name: Required value"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["spec"]["predictor"].update(canaryTrafficPercent="10"),
     'spec.predictor.canaryTrafficPercent: Invalid value: "10": spec.predictor.'
     "canaryTrafficPercent in body must be of type integer"),
    (lambda d: d["spec"]["predictor"].update(canaryTraficPercent=10),
     'unknown field "spec.predictor.canaryTraficPercent"'),
    (lambda d: d["spec"]["predictor"]["model"].update(storageURI="gs://x"),
     'unknown field "spec.predictor.model.storageURI"'),
    (lambda d: d["spec"]["predictor"]["logger"].update(mode="everything"),
     'spec.predictor.logger.mode: Unsupported value: "everything": supported values: '
     '"all", "request", "response"'),
    (lambda d: d["spec"]["predictor"]["model"]["env"].append({"value": "1"}),
     "spec.predictor.model.env[2].name: Required value"),
    (lambda d: d["spec"].pop("predictor"), "spec.predictor: Required value"),
    (lambda d: d["metadata"].update(labelz={}), 'unknown field "metadata.labelz"'),
])
def test_a_broken_inference_service_fails_with_the_schemas_message(isvc, crd_cache, mutate,
                                                                   message):
    obj = isvc
    mutate(obj)
    assert message in _problems(obj, crd_cache)


def test_int_or_string_and_quantities_accept_both_forms(isvc, crd_cache):
    obj = isvc
    obj["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"] = 2
    assert validate_object(obj, crd_cache) == "kserve CRD"
    obj["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"] = [2]
    assert "resources.limits.cpu" in _problems(obj, crd_cache)


@pytest.mark.parametrize("kind, name, mutate, message", [
    ("Service", "civicsense-monitor", lambda d: d["spec"]["ports"][0].pop("protocol"),
     "spec.ports[0].protocol: Required value (server-side apply merges by ['port', "
     "'protocol'])"),
    ("Deployment", "civicsense-log-sink", lambda d: d["spec"].update(replicas="1"),
     'spec.replicas: Invalid value: "1": spec.replicas in body must be of type integer'),
    ("Deployment", "civicsense-log-sink",
     lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(
         containerPort="8090"),
     'spec.template.spec.containers[0].ports[0].containerPort: Invalid value: "8090"'),
    ("Deployment", "civicsense-log-sink", lambda d: d["spec"].pop("selector"),
     "spec.selector: Required value"),
    ("CronJob", "civicsense-monitor", lambda d: d["spec"].update(schedul="* * * * *"),
     'unknown field "spec.schedul"'),
    ("NetworkPolicy", "civicsense-log-sink",
     lambda d: d["spec"]["ingress"][0]["ports"][0].update(port=[8090]),
     "spec.ingress[0].ports[0].port: "),
    ("Secret", "civicsense-sink-token", lambda d: d["metadata"].pop("name"),
     "metadata.name: Required value"),
])
def test_a_broken_kubernetes_object_fails_with_the_schemas_message(rendered, find, crd_cache,
                                                                   kind, name, mutate, message):
    obj = find(rendered["local"], kind, name)
    mutate(obj)
    assert message in _problems(obj, crd_cache)


def test_an_object_with_no_schema_is_an_error_not_a_skip(crd_cache):
    obj = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterStorageContainer",
           "metadata": {"name": "x"}, "spec": {}}
    assert "no schema for serving.kserve.io/v1alpha1 ClusterStorageContainer" in _problems(
        obj, crd_cache)
    assert "not a Kubernetes object" in _problems({"kind": "Service"}, crd_cache)


def test_strict_schema_rejects_unknown_fields_except_where_kubernetes_preserves_them():
    schema = strict_schema({"type": "object", "properties": {
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "port": {"x-kubernetes-int-or-string": True},
        "maybe": {"type": "string", "nullable": True},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}}}})
    assert schema["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["free"]
    assert schema["properties"]["port"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert schema["properties"]["maybe"]["type"] == ["string", "null"]
    assert schema["properties"]["labels"]["additionalProperties"] == {"type": "string"}


def test_the_shared_crds_are_the_pinned_release():
    found = fetch_crds(cache_dir=SHARED_CRDS / "never-used")
    assert set(found) == set(KSERVE_CRD_SHA256)
    assert all(path.parent == SHARED_CRDS for path in found.values())
    crd = yaml.safe_load(found["serving.kserve.io_inferenceservices.yaml"].read_text())
    assert crd["spec"]["names"]["kind"] == "InferenceService"


def test_crds_are_downloaded_when_absent_and_refused_when_their_sha256_differs(tmp_path):
    """The download path through a file:// release mirror: the pinned files are accepted and
    cached; one changed byte is refused with both digests."""
    mirror, empty = tmp_path / "mirror", tmp_path / "no-shared"
    mirror.mkdir()
    for name in KSERVE_CRD_SHA256:
        (mirror / name).write_bytes((SHARED_CRDS / name).read_bytes())
    found = fetch_crds(tmp_path / "cache", shared=empty, base_url=mirror.as_uri())
    assert all(str(path).startswith(str(tmp_path / "cache")) for path in found.values())
    name = "serving.kserve.io_servingruntimes.yaml"
    (mirror / name).write_bytes((mirror / name).read_bytes() + b"\n# changed\n")
    with pytest.raises(CrdError, match=f"{name}: sha256 [0-9a-f]{{64}}, pinned "
                                       f"{KSERVE_CRD_SHA256[name]}"):
        fetch_crds(tmp_path / "cache-2", shared=empty, base_url=mirror.as_uri())
    (tmp_path / "cache" / "v0.20.0" / name).write_text("tampered")
    with pytest.raises(CrdError, match="not KServe v0.20.0's released CRD"):
        fetch_crds(tmp_path / "cache", shared=empty, base_url=mirror.as_uri())
