"""The labeling pipelines (issue 14): committed YAMLs current and strict, each step a component
on the state PVC like the training's, and the daily export's recurring run matches its inputs."""

from __future__ import annotations

import json

import pytest
import yaml

from civicsense.deploy.check import LABELING_KFP
from civicsense.deploy.kfp_specs import KfpSpecError, check_recurring_run, parse_pipeline
from civicsense.orchestration.runner import LABELING_PIPELINES, compile_labeling
from pipelines.training import STATE_MOUNT, STATE_PVC


def test_the_committed_labeling_yamls_are_current(tmp_path):
    for fresh in compile_labeling(tmp_path):
        committed = next(p for p in LABELING_PIPELINES.values() if p.name == fresh.name)
        assert committed.read_text() == fresh.read_text(), "run `make compile` and commit"


@pytest.mark.parametrize("path, task, inputs", [
    (LABELING_PIPELINES["label_export_pipeline"], "label-export-op",
     {"budget", "strategy", "seed"}),
    (LABELING_PIPELINES["label_import_pipeline"], "label-import-op", {"export_file"}),
])
def test_each_labeling_step_runs_on_the_state_volume_uncached(path, task, inputs):
    spec, _ = parse_pipeline(path)
    assert set(spec.root.input_definitions.parameters) == inputs
    assert set(spec.root.dag.tasks) == {task}
    assert not spec.root.dag.tasks[task].caching_options.enable_cache  # logs change under it
    platform = list(yaml.safe_load_all(path.read_text()))[1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    mounts = [m for executor in executors.values() for m in executor["pvcMount"]]
    assert {(m["constant"], m["mountPath"]) for m in mounts} == {(STATE_PVC, STATE_MOUNT)}


def test_the_daily_export_recurring_run_matches_the_export_pipeline():
    (pipeline, recurring), = [(p, r) for p, r in LABELING_KFP if r is not None]
    body, spec = json.loads(recurring.read_text()), parse_pipeline(pipeline)[0]
    check_recurring_run(body, spec)
    body["runtime_config"]["parameters"]["budget"] = "500"
    with pytest.raises(KfpSpecError, match="budget"):
        check_recurring_run(body, spec)
