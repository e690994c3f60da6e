"""The monitoring bucket's lifecycle rule (retention of the logs on gs://): the shape the GCS
client builds, the prefixes the cluster's logs are written under, the local retention's days."""

from __future__ import annotations

import json

import yaml
from google.cloud.storage.bucket import LifecycleRuleDelete

from civicsense.settings import PROJECT_ROOT, Settings
from civicsense.storage import split_gcs_uri

MANIFESTS = PROJECT_ROOT / "manifests"
LIFECYCLE = MANIFESTS / "gcs" / "civicsense-monitoring-lifecycle.json"
LOG_KEYS = ("CIVICSENSE_INFERENCE_LOG_URI", "CIVICSENSE_FEEDBACK_LOG_URI")


def _config_maps() -> list[dict]:
    """The ConfigMaps that say where the cluster's logs are (the sink's and monitor's, the
    pipelines')."""
    found = []
    for path in (MANIFESTS / "base" / "monitoring" / "monitor-config.yaml",
                 MANIFESTS / "base" / "training" / "pipeline-state.yaml"):
        found += [d for d in yaml.safe_load_all(path.read_text())
                  if d and d["kind"] == "ConfigMap" and LOG_KEYS[0] in d["data"]]
    return found


def test_the_rule_deletes_both_logs_after_the_retention_and_nothing_else():
    (rule,) = json.loads(LIFECYCLE.read_text())["rule"]
    retention = Settings.model_fields["log_retention_days"].default
    logs = sorted({split_gcs_uri(config["data"][key]) for config in _config_maps()
                   for key in LOG_KEYS})
    assert len(_config_maps()) == 2 and len(logs) == 2  # both ConfigMaps name the same two
    assert {bucket for bucket, _ in logs} == {LIFECYCLE.stem.removesuffix("-lifecycle")}
    prefixes = [f"{prefix}/" for _, prefix in logs]
    # What google-cloud-storage itself sends for such a rule (JSON API field names).
    assert rule == dict(LifecycleRuleDelete(age=retention,
                                            matches_prefix=rule["condition"]["matchesPrefix"]))
    assert sorted(rule["condition"]["matchesPrefix"]) == prefixes
    reports = split_gcs_uri(_config_maps()[0]["data"]["CIVICSENSE_REPORTS_URI"])[1]
    assert not any(f"{reports}/".startswith(prefix) for prefix in prefixes)  # reports stay
