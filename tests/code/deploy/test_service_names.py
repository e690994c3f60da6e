"""Predictor Service names as KServe v0.20.0 derives them (constants.go PredictorServiceName),
and the check that every name the bring-up and the docs use is one KServe creates: the old
bring-up (port-forward to civicsense-sentiment-predictor while the manifest named the predictor
`champion`) fails it."""

from __future__ import annotations

from pathlib import Path

from civicsense.deploy.bringup import PREDICTOR_PORT, Background, ClusterConfig, e2e_plan
from civicsense.deploy.check import Report, check_service_names
from civicsense.rollout.kserve_names import (
    SERVICE_PORT,
    predictor_service_name,
    predictor_services,
)

NAME = "civicsense-sentiment"


def test_service_names_follow_predictor_service_name():
    assert predictor_service_name(NAME) == f"{NAME}-predictor"
    assert predictor_service_name(NAME, "") == f"{NAME}-predictor"
    assert predictor_service_name(NAME, "champion") == f"{NAME}-champion-predictor"
    obj = {"metadata": {"name": NAME}, "spec": {"predictor": {"name": "champion"}, "canary": [
        {"trafficPercent": 10, "predictor": {"name": "v2"}}]}}
    assert predictor_services(obj) == {"main": f"{NAME}-champion-predictor",
                                       "canary v2": f"{NAME}-v2-predictor"}


def test_the_bring_up_port_forwards_the_service_kserve_creates(tmp_path):
    cfg = ClusterConfig("c:1", "s:1", tmp_path, tmp_path, tmp_path)
    forwards = [s for s in e2e_plan(cfg) if isinstance(s, Background) and s.port == PREDICTOR_PORT]
    # Once after serving, then again after promote and after rollback (a new pod each time).
    assert len(forwards) == 3
    for step in forwards:
        assert f"svc/{NAME}-predictor" in step.argv and f"{PREDICTOR_PORT}:{SERVICE_PORT}" in (
            step.argv)


def test_the_real_bring_up_and_docs_pass(rendered, find):
    report = Report()
    check_service_names(find(rendered["local"], "InferenceService", NAME), report)
    assert report.ok, report.problems


def test_the_old_bring_up_and_a_wrong_doc_fail(rendered, find, tmp_path):
    isvc = find(rendered["local"], "InferenceService", NAME)
    isvc["spec"]["predictor"]["name"] = "champion"   # the old manifest
    doc = tmp_path / "doc.md"
    doc.write_text(f"kubectl port-forward svc/{NAME}-v9-predictor 8080:80\n")
    report = Report()
    check_service_names(isvc, report, docs=(Path(doc),),
                        bringup=f"kubectl -n civicsense port-forward svc/{NAME}-predictor 8080:80")
    assert len(report.problems) == 2
    assert report.problems[0].startswith(f"the bring-up: Service {NAME}-predictor is not the "
                                         "main predictor's at every rollout step")
    assert f"KServe creates no Service {NAME}-v9-predictor" in report.problems[1]
