"""Run the training pipeline locally (KFP local runner), compile it, or submit it to Kubeflow."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from civicsense.data.merge import sources_fingerprint
from civicsense.data.sources import fingerprint  # noqa: F401 - the base source's key (tests)
from civicsense.orchestration.run_capture import (
    RunObserver,
    captured,
    display_names,
    observed_tasks,
)
from civicsense.settings import PROJECT_ROOT, Settings
from civicsense.training.params import PipelineParams

COMPILED_PIPELINE = PROJECT_ROOT / "pipelines" / "civicsense_training.yaml"
# The labeling pipelines (pipelines/labeling.py), each compiled to its own YAML beside it.
LABELING_PIPELINES = {"label_export_pipeline": PROJECT_ROOT / "pipelines" /
                      "civicsense_label_export.yaml",
                      "label_import_pipeline": PROJECT_ROOT / "pipelines" /
                      "civicsense_label_import.yaml"}


def arguments(settings: Settings, params: PipelineParams, label_sources: Sequence[object] = (),
              confirmed_labels: bool = False) -> dict[str, object]:
    """The pipeline's arguments: the data source, the labelled snapshots to merge after it (in
    order: a later one wins), one fingerprint of them all, and the parameters.
    `confirmed_labels` asks the ingest step itself for the confirmed snapshots (cluster runs)."""
    labels = [str(source) for source in label_sources]
    return {"data_source": settings.data, "label_sources": labels,
            "confirmed_labels": confirmed_labels,
            "source_fingerprint": sources_fingerprint(settings.data, labels, settings),
            **vars(params)}


def run_local(settings: Settings, params: PipelineParams, cache: bool = True, *,
              runner: object | None = None, observer: RunObserver | None = None,
              log_path: Path | None = None, label_sources: Sequence[object] = ()) -> dict:
    """Run the whole pipeline with the KFP SubprocessRunner (or `runner`, e.g. a DockerRunner
    from docker_runner.py) on the data source plus `label_sources` (labelled
    snapshots); returns register's summary.

    With an observer, all output (KFP's task dumps, warnings, the components' logs) goes to
    `log_path` instead of the terminal, and the observer hears each step start and end."""
    from kfp import local

    # Known and documented: the local runner ignores base_image and display names.
    warnings.filterwarnings("ignore", message=".*non-Python base image.*")
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")

    # Component subprocesses read Settings from the environment: pin the resolved values.
    os.environ["CIVICSENSE_HOME"] = str(settings.home_dir)
    os.environ["CIVICSENSE_DATA"] = settings.data
    os.environ.setdefault("MLFLOW_TRACKING_URI", settings.tracking_uri)
    # XGBoost's idle OpenMP threads sleep instead of spinning: on a shared 2-core machine the
    # spinning made 2 threads ~40x slower than 1 (measured by the tune step; README).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    local.init(runner=runner or local.SubprocessRunner(use_venv=False),
               pipeline_root=str(settings.pipeline_root), enable_caching=cache)
    from pipelines.training import training_pipeline

    if observer is None:
        return json.loads(training_pipeline(**arguments(settings, params, label_sources)).output)
    names = display_names(training_pipeline)
    with captured(log_path or run_log_path(settings), observer, list(names.values())) as router:
        with observed_tasks(router, names):
            task = training_pipeline(**arguments(settings, params, label_sources))
        summary = json.loads(task.output)
        print(f"summary: {json.dumps(summary)}")
    return summary


def run_log_path(settings: Settings, command: str = "run") -> Path:
    """A fresh log file for one command: <home>/logs/<command>-<UTC stamp>.log."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return settings.home_dir / "logs" / f"{command}-{stamp}.log"


def compile_pipeline(path: Path = COMPILED_PIPELINE) -> Path:
    """Write the pipeline's IR YAML, ready for the Kubeflow UI or kfp.Client."""
    from kfp import compiler

    from pipelines.training import training_pipeline

    compiler.Compiler().compile(training_pipeline, str(path))
    return path


def compile_labeling(directory: Path | None = None) -> list[Path]:
    """Write the labeling pipelines' IR YAMLs (into `directory`, else beside the training's)."""
    from kfp import compiler

    from pipelines import labeling

    written = []
    for function, default in LABELING_PIPELINES.items():
        path = (directory / default.name) if directory else default
        compiler.Compiler().compile(getattr(labeling, function), str(path))
        written.append(path)
    return written


def submit(host: str, settings: Settings, params: PipelineParams, experiment: str,
           namespace: str | None = None, *, label_sources: Sequence[object] = (),
           confirmed_labels: bool = False) -> str:
    """Create a run of the compiled pipeline on a Kubeflow Pipelines endpoint; its run id.
    With `confirmed_labels` the ingest step adds the confirmed snapshots it finds on the
    cluster's state volume, and the run skips the step cache (its key cannot see them)."""
    import kfp

    if not COMPILED_PIPELINE.exists():
        compile_pipeline()
    client = kfp.Client(host=host, namespace=namespace)
    run = client.create_run_from_pipeline_package(
        str(COMPILED_PIPELINE), arguments=arguments(settings, params, label_sources,
                                                    confirmed_labels),
        experiment_name=experiment, enable_caching=False if confirmed_labels else None)
    return run.run_id
