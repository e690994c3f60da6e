"""Run the training pipeline locally (KFP local runner), compile it, or submit it to Kubeflow."""

from __future__ import annotations

import json
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

from civicsense.data.sources import fingerprint
from civicsense.settings import PROJECT_ROOT, Settings
from civicsense.training.params import PipelineParams
from civicsense.training.run_capture import RunObserver, captured, display_names, observed_tasks

COMPILED_PIPELINE = PROJECT_ROOT / "pipelines" / "civicsense_training.yaml"


def arguments(settings: Settings, params: PipelineParams) -> dict[str, object]:
    """The pipeline's arguments: the data source, its fingerprint and the parameters."""
    return {"data_source": settings.data,
            "source_fingerprint": fingerprint(settings.data, settings), **vars(params)}


def run_local(settings: Settings, params: PipelineParams, cache: bool = True, *,
              runner: object | None = None, observer: RunObserver | None = None,
              log_path: Path | None = None) -> dict:
    """Run the whole pipeline with the KFP SubprocessRunner (or `runner`, e.g. a DockerRunner
    from training/docker_runner.py); returns register's summary.

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
    local.init(runner=runner or local.SubprocessRunner(use_venv=False),
               pipeline_root=str(settings.pipeline_root), enable_caching=cache)
    from pipelines.training import training_pipeline

    if observer is None:
        return json.loads(training_pipeline(**arguments(settings, params)).output)
    names = display_names(training_pipeline)
    with captured(log_path or run_log_path(settings), observer, list(names.values())) as router:
        with observed_tasks(router, names):
            task = training_pipeline(**arguments(settings, params))
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


def submit(host: str, settings: Settings, params: PipelineParams, experiment: str,
           namespace: str | None = None) -> str:
    """Create a run of the compiled pipeline on a Kubeflow Pipelines endpoint; its run id."""
    import kfp

    if not COMPILED_PIPELINE.exists():
        compile_pipeline()
    client = kfp.Client(host=host, namespace=namespace)
    run = client.create_run_from_pipeline_package(
        str(COMPILED_PIPELINE), arguments=arguments(settings, params), experiment_name=experiment)
    return run.run_id
