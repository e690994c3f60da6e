"""Cluster pieces, offline: the recurring run through the real kfp.Client (against a stub of the
KFP REST API) and its spec parse into KFP's API models; the CronJob, sink Deployment and Service
parse into the Kubernetes models and are wired to each other and to the InferenceService."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import kfp_server_api
import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from typer.testing import CliRunner

from civicsense.cli.app import app
from civicsense.orchestration.schedule import create_schedule, validate_cron
from civicsense.rollout.manifests import parse_manifest
from civicsense.settings import PROJECT_ROOT, Settings

MANIFESTS = PROJECT_ROOT / "manifests"
MONITORING = MANIFESTS / "base" / "monitoring"


def docs(path: Path) -> dict:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(path.read_text())
            if d}


def api_model(data: dict, klass: str):
    """Strict: every key must be a field of the KFP API model (its deserializer drops
    unknown ones silently)."""
    cls = getattr(kfp_server_api, klass)
    unknown = set(data) - set(cls.attribute_map.values())
    assert not unknown, f"{klass} has no fields {unknown}"
    return kfp_server_api.ApiClient()._ApiClient__deserialize(data, klass)


@pytest.mark.parametrize("cron", ["0 0 3 * * *", "0 */15 * * * *", "30 0 3 * * mon-fri",
                                  "0 0 0 1 jan,jul ?", "0 0 12 1-15/2 * 0"])
def test_six_field_crons_pass(cron):
    assert validate_cron(cron) == cron


@pytest.mark.parametrize("cron,message", [
    ("0 3 * * *", "5 fields: prepend the seconds"), ("0 0 3 * *  * *", "has 7 fields"),
    ("60 0 3 * * *", "second"), ("0 0 24 * * *", "hour"), ("0 0 3 0 * *", "day of month"),
    ("0 0 3 * 13 *", "month"), ("0 0 3 * * 7", "day of week"), ("0 */0 * * * *", "step 0"),
    ("0 0 3 * * funday", "day of week")])
def test_bad_crons_are_refused(cron, message):
    with pytest.raises(ValueError, match=message):
        validate_cron(cron)


def test_schedule_create_through_kfp_client(kfp_api, tmp_path, monkeypatch):
    host, calls = kfp_api
    monkeypatch.setenv("CIVICSENSE_HOME", str(tmp_path / "home"))
    job = create_schedule(host, Settings(data="gs://civicsense-data/semeval/"), "0 0 3 * * *",
                          "nightly", "civicsense")
    assert isinstance(job, kfp_server_api.V2beta1RecurringRun)
    assert job.recurring_run_id == "rr-1"
    (_, path, body), = [c for c in calls if c[0] == "POST"]
    assert path == "/apis/v2beta1/recurringruns"
    run = api_model(body, "V2beta1RecurringRun")
    assert run.trigger.cron_schedule.cron == "0 0 3 * * *"
    assert (run.experiment_id, run.mode, run.max_concurrency, run.no_catchup) == (
        "exp-1", "ENABLE", "1" if isinstance(run.max_concurrency, str) else 1, True)
    assert run.runtime_config.parameters["data_source"] == "gs://civicsense-data/semeval/"
    # With kfp-kubernetes settings the client sends {pipeline_spec, platform_spec}.
    assert set(run.pipeline_spec) == {"pipeline_spec", "platform_spec"}
    assert "kubernetes" in run.pipeline_spec["platform_spec"]["platforms"]
    spec = json_format.ParseDict(run.pipeline_spec["pipeline_spec"],
                                 pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == "civicsense-training"
    # Every step reruns on a schedule (fresh data under the same source string).
    tasks = spec.root.dag.tasks
    assert tasks and all(not t.caching_options.enable_cache for t in tasks.values())


def test_schedule_cli_refuses_five_fields_before_any_call(kfp_api):
    host, calls = kfp_api
    result = CliRunner().invoke(app, ["schedule", "create", "--cron", "0 3 * * *",
                                      "--host", host])
    assert result.exit_code == 2 and "seconds first" in result.output
    assert calls == []


def test_the_recurring_run_spec_parses_into_the_kfp_api_model():
    spec = json.loads((MANIFESTS / "kfp" / "recurring-run.json").read_text())
    run = api_model(spec, "V2beta1RecurringRun")
    validate_cron(run.trigger.cron_schedule.cron)
    api_model(spec["trigger"], "V2beta1Trigger")
    assert run.max_concurrency in (1, "1") and run.no_catchup is True
    assert set(run.runtime_config.parameters) <= {
        "data_source", "sample_size", "split_method", "validation_fraction", "n_estimators",
        "max_depth", "learning_rate", "seed", "gate_margin", "confirmed_labels", "tune",
        "tune_trials"}
    assert run.runtime_config.parameters["tune"] is False  # scheduled runs keep their budget
    assert run.runtime_config.parameters["confirmed_labels"] is True  # retrains on new labels


def test_the_monitor_cronjob_runs_the_component_image_with_secret_credentials():
    objects = docs(MONITORING / "monitor-cronjob.yaml")
    cronjob = parse_manifest(objects[("CronJob", "civicsense-monitor")])
    assert len(cronjob.spec.schedule.split()) == 5  # Kubernetes cron; KFP's has six
    assert cronjob.spec.concurrency_policy == "Forbid"
    pod = cronjob.spec.job_template.spec.template.spec
    container, = pod.containers
    # The base names the component image; each overlay's `images:` sets registry and tag.
    assert container.image == "civicsense-components"
    assert container.command == ["civicsense", "monitor"]
    assert [e.config_map_ref.name for e in container.env_from] == ["civicsense-monitoring"]
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["gcp-credentials"].secret.secret_name == "civicsense-gcs"
    assert volumes["state"].persistent_volume_claim.claim_name == "civicsense-monitor-state"
    mounts = {m.name: m.mount_path for m in container.volume_mounts}
    config = docs(MONITORING / "monitor-config.yaml")
    data = parse_manifest(config[("ConfigMap", "civicsense-monitoring")]).data
    assert mounts["state"] == data["CIVICSENSE_HOME"]  # lock and cooldown state persist
    assert data["GOOGLE_APPLICATION_CREDENTIALS"].startswith(mounts["gcp-credentials"] + "/")
    assert pod.restart_policy == "Never" and cronjob.spec.job_template.spec.backoff_limit == 0
    assert Settings(**{k.removeprefix("CIVICSENSE_").lower(): v for k, v in data.items()})
    assert data["CIVICSENSE_INFERENCE_LOG_URI"].startswith("gs://")
    rbac = docs(MONITORING / "monitor-rbac.yaml")
    assert parse_manifest(rbac[("ServiceAccount", "civicsense-monitor")])
    assert pod.service_account_name == "civicsense-monitor"
    examples = MANIFESTS / "examples"
    secret = docs(examples / "storage-secret.example.yaml")[("Secret", "civicsense-gcs")]
    assert data["GOOGLE_APPLICATION_CREDENTIALS"].rsplit("/", 1)[1] in secret["stringData"]


def test_the_sink_service_is_where_the_inference_service_logger_posts():
    objects = docs(MONITORING / "log-sink.yaml")
    deployment = parse_manifest(objects[("Deployment", "civicsense-log-sink")])
    service = parse_manifest(objects[("Service", "civicsense-monitor")])
    container, = deployment.spec.template.spec.containers
    assert container.command[:2] == ["civicsense", "sink"]
    assert deployment.spec.replicas == 1  # request/response pairing is in memory
    assert service.spec.selector == deployment.spec.selector.match_labels
    port, = service.spec.ports
    assert port.target_port == container.ports[0].name
    isvc_file = MANIFESTS / "base" / "serving" / "inferenceservice.yaml"
    isvc, = [d for d in yaml.safe_load_all(isvc_file.read_text())]
    logger = isvc["spec"]["predictor"]["logger"]
    url = urlparse(logger["url"])
    assert logger["mode"] == "all"
    assert url.hostname.split(".")[:2] == [service.metadata.name, service.metadata.namespace]
    assert (url.port or 80) == port.port and url.path == "/events"
