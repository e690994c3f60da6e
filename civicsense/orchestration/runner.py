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
from civicsense.orchestration.compiled import (
    LABEL_EXPORT,
    LABEL_IMPORT,
    TRAINING,
    check_image,
    pipeline_package,
    with_image,
)
from civicsense.orchestration.run_capture import (
    RunObserver,
    captured,
    display_names,
    observed_tasks,
)
from civicsense.settings import PROJECT_ROOT, Settings
from civicsense.training.params import PipelineParams

# The committed YAMLs (the default component image), which the package ships (compiled.py).
COMPILED_PIPELINE = PROJECT_ROOT / "pipelines" / TRAINING
# The labeling pipelines (pipelines/labeling.py), each compiled to its own YAML beside it.
LABELING_PIPELINES = {"label_export_pipeline": PROJECT_ROOT / "pipelines" / LABEL_EXPORT,
                      "label_import_pipeline": PROJECT_ROOT / "pipelines" / LABEL_IMPORT}


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


def compile_pipeline(path: Path = COMPILED_PIPELINE, image: str | None = None) -> Path:
    """Write the pipeline's IR YAML, ready for the Kubeflow UI or kfp.Client; with `image`,
    every executor runs that container image instead of the components' default."""
    from kfp import compiler

    from pipelines.training import training_pipeline

    if image is not None:
        check_image(image)
    compiler.Compiler().compile(training_pipeline, str(path))
    return with_image(path, image, path) if image else path


def compile_labeling(directory: Path | None = None, image: str | None = None) -> list[Path]:
    """Write the labeling pipelines' IR YAMLs (into `directory`, else beside the training's),
    with `image` in every executor when given."""
    from kfp import compiler

    from pipelines import labeling

    if image is not None:
        check_image(image)
    written = []
    for function, default in LABELING_PIPELINES.items():
        path = (directory / default.name) if directory else default
        compiler.Compiler().compile(getattr(labeling, function), str(path))
        written.append(with_image(path, image, path) if image else path)
    return written


def submit(host: str, settings: Settings, params: PipelineParams, experiment: str,
           namespace: str | None = None, *, label_sources: Sequence[object] = (),
           confirmed_labels: bool = False, fresh: bool = False) -> str:
    """Create a run of the compiled pipeline on a Kubeflow Pipelines endpoint; its run id.

    The pipeline is the YAML the package ships, its executors running
    `settings.component_image` (a copy in a temporary directory when that differs from the
    shipped image); `fresh` compiles this tree's pipeline into a temporary directory instead.
    Nothing is written into the package (read-only in the component image).
    With `confirmed_labels` the ingest step adds the confirmed snapshots it finds on the
    cluster's state volume, and the run skips the step cache (its key cannot see them)."""
    import kfp

    with pipeline_package(settings.component_image,
                          compile_to=compile_pipeline if fresh else None) as package:
        client = kfp.Client(host=host, namespace=namespace)
        run = client.create_run_from_pipeline_package(
            str(package), arguments=arguments(settings, params, label_sources,
                                              confirmed_labels),
            experiment_name=experiment, enable_caching=False if confirmed_labels else None)
    return run.run_id
