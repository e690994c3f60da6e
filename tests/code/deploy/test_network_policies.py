"""Every namespace the manifests create denies all traffic by default, and the policies allow
exactly the calls the workloads make: a rendered set without default-deny fails, as does a
policy or peer that selects no pod, and a call the policies refuse at either end."""

from __future__ import annotations

import copy

import pytest

from civicsense.deploy.check import Report, check_security
from civicsense.deploy.netpol import (
    Pod,
    allowed,
    default_deny_problems,
    network_problems,
    pods,
    selects,
)


def pod(objects: list[dict], who: str) -> Pod:
    found, = [p for p in pods(objects) if p.who == who]
    return found


@pytest.mark.parametrize("overlay", ["local", "gke"])
def test_the_real_overlays_deny_by_default_and_allow_every_call(rendered, overlay):
    assert network_problems(rendered[overlay]) == []
    report = Report()
    check_security(overlay, rendered[overlay], report)
    assert report.ok and ("overlay " + overlay, "NetworkPolicies",
                          "default-deny + every call allowed") in report.checked


def test_without_the_default_deny_the_namespace_fails(rendered):
    objects = [o for o in rendered["local"] if not (
        o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "default-deny")]
    assert default_deny_problems(objects) == [
        f"namespace civicsense: no default-deny NetworkPolicy for {d} (podSelector {{}}, "
        "policyTypes [Ingress, Egress], no rules)" for d in ("egress", "ingress")]
    report = Report()
    check_security("local", objects, report)
    assert any(p.startswith("overlay local: namespace civicsense: no default-deny")
               for p in report.problems)


@pytest.mark.parametrize("spec, missing", [
    ({"podSelector": {}, "policyTypes": ["Ingress"]}, ["egress"]),
    ({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}]}, ["ingress"]),
    ({"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Ingress", "Egress"]},
     ["egress", "ingress"]),
])
def test_a_partial_deny_is_not_a_default_deny(rendered, spec, missing):
    objects = copy.deepcopy(rendered["local"])
    deny, = [o for o in objects if o["kind"] == "NetworkPolicy"
             and o["metadata"]["name"] == "default-deny"]
    deny["spec"] = spec
    assert [p.split(" for ")[1].split(" ")[0] for p in default_deny_problems(objects)] == missing


def test_every_namespace_the_manifests_create_needs_its_own(rendered):
    objects = [*rendered["local"], {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": "labeling"}}]
    assert [p.split(":")[0] for p in default_deny_problems(objects)] == [
        "namespace labeling", "namespace labeling"]


def policy(objects: list[dict], name: str) -> dict:
    found, = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name]
    return found["spec"]


@pytest.mark.parametrize("mutate, expected", [
    (lambda o: policy(o, "mlflow")["ingress"][0]["from"].pop(1),
     "KFP pipeline step → http://mlflow.civicsense.svc.cluster.local:5000 (MLFLOW_TRACKING_URI): "
     "refused by the NetworkPolicies (ingress of Deployment/mlflow, port 5000)"),
    (lambda o: policy(o, "civicsense-monitor")["egress"].pop(0),
     "CronJob/civicsense-monitor → http://mlflow.civicsense.svc.cluster.local:5000 "
     "(MLFLOW_TRACKING_URI): refused by the NetworkPolicies (egress of "
     "CronJob/civicsense-monitor, port 5000)"),
    (lambda o: policy(o, "civicsense-monitor")["egress"].pop(1),
     "CronJob/civicsense-monitor → http://ml-pipeline.kubeflow.svc.cluster.local:8888 "
     "(CIVICSENSE_KFP_HOST): refused by the NetworkPolicies (egress of "
     "CronJob/civicsense-monitor to kubeflow, port 8888)"),
    (lambda o: policy(o, "civicsense-log-sink")["ingress"][0]["ports"][0].update(port=8080),
     "InferenceService/civicsense-sentiment → http://civicsense-monitor.civicsense.svc.cluster."
     "local/events (the payload logger): refused by the NetworkPolicies (ingress of "
     "Deployment/civicsense-log-sink, port 8090)"),
    (lambda o: policy(o, "storage-egress")["podSelector"]["matchExpressions"][0]["values"].remove(
        "mlflow"),
     "Deployment/mlflow → http://object-storage.civicsense.svc.cluster.local:9023 "
     "(STORAGE_EMULATOR_HOST): refused by the NetworkPolicies (egress of Deployment/mlflow, "
     "port 9023)"),
    (lambda o: policy(o, "allow-dns").update(podSelector={"matchLabels": {"app": "nothing"}}),
     "NetworkPolicy civicsense/allow-dns: podSelector selects no pod"),
    (lambda o: policy(o, "mlflow")["ingress"][0]["from"][0]["podSelector"]["matchLabels"].update(
        {"app.kubernetes.io/name": "civicsense-monitr"}),
     "NetworkPolicy civicsense/mlflow: ingress peer {'matchLabels': {'app.kubernetes.io/name': "
     "'civicsense-monitr'}} selects no pod in civicsense"),
])
def test_each_broken_allow_is_named(rendered, mutate, expected):
    objects = copy.deepcopy(rendered["local"])
    mutate(objects)
    assert expected in network_problems(objects)


def test_a_call_to_a_service_that_is_not_there_or_has_no_such_port_fails(rendered):
    objects = copy.deepcopy(rendered["local"])
    service, = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "mlflow"]
    service["spec"]["ports"][0]["targetPort"] = "web"
    assert ("CronJob/civicsense-monitor → http://mlflow.civicsense.svc.cluster.local:5000 "
            "(MLFLOW_TRACKING_URI): Deployment/mlflow has no port web") in network_problems(objects)
    objects.remove(service)
    assert ("CronJob/civicsense-monitor → http://mlflow.civicsense.svc.cluster.local:5000 "
            "(MLFLOW_TRACKING_URI): no Service civicsense/mlflow") in network_problems(objects)


def test_only_what_needs_mlflow_reaches_it_and_label_studio_reaches_nothing(rendered):
    objects = rendered["local"]
    mlflow, sink = pod(objects, "Deployment/mlflow"), pod(objects, "Deployment/civicsense-log-sink")
    assert allowed(objects, pod(objects, "CronJob/civicsense-monitor"), mlflow, 5000) == []
    assert allowed(objects, pod(objects, "KFP pipeline step"), mlflow, 5000) == []
    for caller in ("Deployment/civicsense-log-sink", "InferenceService/civicsense-sentiment",
                   "Deployment/label-studio", "Deployment/object-storage"):
        assert allowed(objects, pod(objects, caller), mlflow, 5000) != [], caller
    studio = pod(objects, "Deployment/label-studio")
    assert allowed(objects, studio, sink, 8090) == [
        "egress of Deployment/label-studio", "ingress of Deployment/civicsense-log-sink"]
    assert allowed(objects, Pod("elsewhere", "default", {}), studio, 8080) == [
        "ingress of Deployment/label-studio"]


def test_in_knative_mode_the_activator_and_gateway_reach_the_predictors_nobody_else(rendered):
    objects = rendered["gke"]
    predictor = pod(objects, "InferenceService/civicsense-sentiment")
    for namespace in ("knative-serving", "istio-system"):
        assert allowed(objects, Pod("knative", namespace, {}), predictor, 8012) == []
    assert allowed(objects, Pod("other", "default", {}), predictor, 8080) == [
        "ingress of InferenceService/civicsense-sentiment"]
    local = rendered["local"]   # Standard mode on kind: port-forward only
    assert allowed(local, Pod("knative", "knative-serving", {}),
                   pod(local, "InferenceService/civicsense-sentiment"), 8080) != []


@pytest.mark.parametrize("selector, labels, expected", [
    ({}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "3"]}]}, {"a": "3"},
     True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"},
     False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
])
def test_label_selectors_match_as_kubernetes_does(selector, labels, expected):
    assert selects(selector, labels) is expected
