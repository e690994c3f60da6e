"""The cluster path runs the image `make images` built: the bring-up compiles the pipelines with
it and uploads, runs and schedules that copy; the monitor's triggered runs use the image the
monitor runs (each overlay copies it into the ConfigMap); check-manifests proves both, and
fails when a pipeline step or the ConfigMap names another image."""

from __future__ import annotations

import copy

import yaml

from civicsense.deploy.bringup import ClusterConfig, CompilePipelines, e2e_plan, up_plan
from civicsense.deploy.check import (
    COMPILED_PIPELINE,
    MONITOR_CONFIG,
    MONITOR_IMAGE_KEY,
    RECURRING_RUN,
    Report,
    check_kfp,
    check_manifests,
    check_monitor_image,
    compile_pipelines,
)
from civicsense.deploy.execute import StepFailed, describe, run_plan
from civicsense.deploy.render import render
from civicsense.orchestration.compiled import TRAINING, executor_images, with_image
from civicsense.settings import DEFAULT_COMPONENT_IMAGE, MIRROR_DATA

IMAGE = "civicsense-components:0.1.0-abc1234"
REGISTRY_IMAGE = "registry.example:5000/cs/civicsense-components:0.1.0-abc1234"


def config(tmp_path) -> ClusterConfig:
    return ClusterConfig(IMAGE, "civicsense-serving:0.1.0-abc1234", tmp_path / "cluster",
                         MIRROR_DATA, MIRROR_DATA.parent / "tweeteval-stance")


def test_the_bring_up_uploads_runs_and_schedules_the_pipeline_compiled_with_its_image(tmp_path):
    cfg = config(tmp_path)
    package = str(cfg.workdir / "pipelines" / TRAINING)
    up, e2e = up_plan(cfg), e2e_plan(cfg)
    for plan in (up, e2e):
        compiled, = [s for s in plan if isinstance(s, CompilePipelines)]
        assert (compiled.image, compiled.directory) == (IMAGE, cfg.workdir / "pipelines")
        assert describe(compiled).startswith(f"civicsense pipeline compile --image {IMAGE} "
                                             f"--output-dir {cfg.workdir / 'pipelines'}")
    argv = {step.title: step.argv for step in up + e2e if hasattr(step, "argv")}
    assert argv["upload the compiled pipeline"][-1] == package
    schedule = argv["create the recurring run (nightly retraining)"]
    assert schedule[schedule.index("--image") + 1] == IMAGE
    runs = [a for title, a in argv.items() if title.startswith("pipeline run ")]
    assert len(runs) == 3
    assert all(a[a.index("--package-file") + 1] == package for a in runs)
    assert not any(arg == "pipelines/civicsense_training.yaml" for a in argv.values() for arg in a)
    # compiled (and checked) before anything is uploaded or run
    for plan, first in ((up, "upload the compiled pipeline"), (e2e, "pipeline run e2e-champion")):
        titles = [s.title for s in plan]
        compiled_at = next(i for i, s in enumerate(plan) if isinstance(s, CompilePipelines))
        assert compiled_at < next(i for i, t in enumerate(titles) if t.startswith(first))


def test_the_compile_step_writes_every_executor_with_the_image_even_in_a_dry_run(tmp_path):
    cfg = config(tmp_path)
    step, = [s for s in e2e_plan(cfg) if isinstance(s, CompilePipelines)]
    printed = []
    run_plan([step], tmp_path / "crds", dry_run=True, echo=printed.append)
    written = sorted(p.name for p in step.directory.iterdir())
    assert written == ["civicsense_label_export.yaml", "civicsense_label_import.yaml", TRAINING]
    for path in step.directory.iterdir():
        assert set(executor_images(path).values()) == {IMAGE}, path
    assert f"(every executor {IMAGE})" in printed[-1]
    assert set(executor_images(COMPILED_PIPELINE).values()) == {DEFAULT_COMPONENT_IMAGE}


def test_a_compile_step_with_a_bad_image_stops_the_plan(tmp_path):
    step = CompilePipelines("compile", "Not An Image", tmp_path / "pipelines")
    try:
        run_plan([step], tmp_path / "crds", dry_run=True, echo=lambda _: None)
    except StepFailed as error:
        assert "cannot compile the pipelines: not a container image reference" in str(error)
    else:
        raise AssertionError("the plan went on")


def test_a_step_running_another_image_is_a_problem_naming_the_step(tmp_path):
    good = compile_pipelines(tmp_path / "ok", IMAGE)[0]
    report = Report()
    check_kfp(report, good, RECURRING_RUN, IMAGE)
    assert report.ok, report.problems
    assert report.checked[0][2].endswith(f"every executor {IMAGE}")
    docs = list(yaml.safe_load_all(good.read_text()))
    executors = docs[0]["deploymentSpec"]["executors"]
    step = sorted(executors)[0]
    executors[step]["container"]["image"] = DEFAULT_COMPONENT_IMAGE
    broken = tmp_path / TRAINING
    broken.write_text(yaml.safe_dump_all(docs))
    report = Report()
    check_kfp(report, broken, RECURRING_RUN, IMAGE)
    assert report.problems == [f"{TRAINING}: {step} runs {DEFAULT_COMPONENT_IMAGE}, not {IMAGE}"]
    assert all(name != "civicsense-training" for _, name, _ in report.checked)


def test_the_committed_pipeline_is_not_what_the_built_image_needs(tmp_path):
    """Why the bring-up compiles: the committed YAML runs the default image, not the tag."""
    report = Report()
    check_kfp(report, COMPILED_PIPELINE, RECURRING_RUN, IMAGE)
    assert len(report.problems) == len(executor_images(COMPILED_PIPELINE)) > 1
    assert all(p.endswith(f"runs {DEFAULT_COMPONENT_IMAGE}, not {IMAGE}") for p in report.problems)
    copied = with_image(COMPILED_PIPELINE, IMAGE, tmp_path / TRAINING)
    report = Report()
    check_kfp(report, copied, RECURRING_RUN, IMAGE)
    assert report.ok, report.problems


def monitor_config(objects: list[dict]) -> dict:
    config, = [o for o in objects if o["kind"] == "ConfigMap"
               and o["metadata"]["name"] == MONITOR_CONFIG]
    return config


def test_each_overlay_gives_the_monitors_runs_the_image_the_monitor_runs(rendered):
    for overlay, objects in rendered.items():
        job, = [o for o in objects if o["kind"] == "CronJob"]
        container, = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert monitor_config(objects)["data"][MONITOR_IMAGE_KEY] == container["image"]
        report = Report()
        check_monitor_image(overlay, objects, report)
        assert report.ok and report.checked[0][2].endswith(container["image"]), overlay


def test_the_image_given_to_render_reaches_the_monitors_config():
    objects = render("local", component_image=REGISTRY_IMAGE)
    assert monitor_config(objects)["data"][MONITOR_IMAGE_KEY] == REGISTRY_IMAGE


def test_a_config_naming_another_image_is_a_problem(rendered):
    objects = copy.deepcopy(rendered["local"])
    config = monitor_config(objects)
    config["data"][MONITOR_IMAGE_KEY] = DEFAULT_COMPONENT_IMAGE
    report = Report()
    check_monitor_image("local", objects, report)
    problem, = report.problems
    assert problem.startswith(f"overlay local: ConfigMap {MONITOR_CONFIG}: {MONITOR_IMAGE_KEY} "
                              f"is {DEFAULT_COMPONENT_IMAGE}, not the image CronJob "
                              "civicsense-monitor runs (civicsense-components:0.1.0-dev)")
    del config["data"][MONITOR_IMAGE_KEY]
    report = Report()
    check_monitor_image("local", objects, report)
    assert f"{MONITOR_IMAGE_KEY} is unset" in report.problems[0]
    report = Report()
    check_monitor_image("local", [o for o in objects if o["kind"] != "CronJob"], report)
    assert "found 1 and 0" in report.problems[0]


def test_check_manifests_compiles_the_pipelines_with_the_image_given(crd_cache):
    report = check_manifests(crd_cache, ["local"], component_image=IMAGE)
    assert report.ok, report.problems
    checked = {source: schema for source, _, schema in report.checked}
    for name in (TRAINING, "civicsense_label_export.yaml", "civicsense_label_import.yaml"):
        assert checked[f"{name} compiled with {IMAGE}"].endswith(f"every executor {IMAGE}")
        assert checked[f"pipelines/{name}"].endswith(f"every executor {DEFAULT_COMPONENT_IMAGE}")
    assert not any("/tmp" in source for source in checked)
    assert ("overlay local", f"{MONITOR_CONFIG} {MONITOR_IMAGE_KEY}",
            f"= CronJob civicsense-monitor's image, {IMAGE}") in report.checked
    report = check_manifests(crd_cache, ["local"], component_image="Civicsense-Components:1")
    assert any(p.startswith("compiling the pipelines: not a container image reference")
               for p in report.problems)
