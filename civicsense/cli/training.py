"""CLI verbs for training (`civicsense run`, `ingest`, `pipeline compile|submit`, `schedule
create`): thin shells over civicsense.data, civicsense.training."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from civicsense.cli.errors import fail
from civicsense.cli.options import DataOption, HomeOption, setting_option
from civicsense.settings import DEFAULT_COMPONENT_IMAGE, Settings, get_settings
from civicsense.training.params import PipelineParams

pipeline_app = typer.Typer(help="Compile or submit the training pipeline.", no_args_is_help=True)
schedule_app = typer.Typer(help="Scheduled retraining on Kubeflow Pipelines (recurring runs).",
                           no_args_is_help=True)

DEFAULTS = PipelineParams()
# Where `pipeline compile --image` writes by default: pipelines/*.yaml keep the default image.
IMAGE_COMPILE_DIR = Path("build") / "pipelines"


def _settings(data: str | None, home: Path | None) -> Settings:
    return get_settings(data=data, home=home)


def run(
    data: str = DataOption,
    home: Path = HomeOption,
    sample_size: int = typer.Option(DEFAULTS.sample_size,
                                    help="Stratified sample of the snapshot (0 = all)."),
    split: str = typer.Option(DEFAULTS.split_method, help="Validation split: time or random."),
    validation_fraction: float = typer.Option(DEFAULTS.validation_fraction,
                                              help="Share of posts held out."),
    n_estimators: int = typer.Option(DEFAULTS.n_estimators, help="XGBoost boosting rounds."),
    max_depth: int = typer.Option(DEFAULTS.max_depth, help="XGBoost tree depth."),
    learning_rate: float = typer.Option(DEFAULTS.learning_rate, help="XGBoost learning rate."),
    gate_margin: float = typer.Option(DEFAULTS.gate_margin, help="Macro recall a candidate must "
                                      "gain over the champion to become challenger."),
    tune: bool = typer.Option(DEFAULTS.tune, "--tune/--no-tune", help="Search XGBoost's "
                              "parameters with Optuna on the training split before train."),
    trials: int = typer.Option(DEFAULTS.tune_trials, help="Optuna trials with --tune."),
    encoder: bool = typer.Option(DEFAULTS.encoder, "--encoder/--no-encoder", help="Fine-tune "
                                 "the MiniLM encoder and feed its outputs to XGBoost (minutes "
                                 "on the full data); off: the fast lexical-only model."),
    encoder_epochs: int = typer.Option(DEFAULTS.encoder_epochs, help="Encoder fine-tune "
                                       "epochs."),
    cache: bool = typer.Option(True, help="Reuse unchanged steps from earlier local runs."),
    summary_json: Path = typer.Option(None, help="Also write the run summary to this file.",
                                      show_default="none"),
    verbose: bool = typer.Option(False, help="Stream KFP's full output here (no log file) "
                                 "instead of one line per step."),
    runner: str = typer.Option("subprocess", help="KFP local runner: subprocess, or docker "
                               "(every step in the component image; docs/containers.md)."),
    image: str = typer.Option(None, help="Component image for --runner docker.",
                              show_default="civicsense-components:<version>-<git sha>"),
    labels: bool = typer.Option(False, "--labels", help="Also train on every confirmed "
                                "labelled snapshot (`civicsense label import`, agreed "
                                "feedback): merged after the data by post id, newer wins."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the pipeline's arguments "
                                 "(data, labelled snapshots, parameters) as JSON; run nothing."),
) -> None:
    """Run the training pipeline end to end on this machine (KFP local runner)."""
    from civicsense.data.ingest import IngestError
    from civicsense.data.sources import SourceError, check
    from civicsense.orchestration.docker_runner import EngineError, pick_runner

    if split not in {"time", "random"}:
        fail(f"--split must be 'time' or 'random', not {split!r}")
    if not 0 < validation_fraction < 1:
        fail("--validation-fraction must be between 0 and 1")
    if tune and trials < 1:
        fail("--trials must be at least 1 with --tune")
    if encoder_epochs < 1:
        fail("--encoder-epochs must be at least 1")
    settings = _settings(data, home)
    params = PipelineParams(sample_size, split, validation_fraction, n_estimators, max_depth,
                            learning_rate, DEFAULTS.seed, gate_margin, tune=tune,
                            tune_trials=trials, encoder=encoder,
                            encoder_epochs=encoder_epochs)
    if not dry_run:
        typer.echo(f"data: {settings.data}\nhome: {settings.home_dir}\n"
                   f"tracking: {settings.tracking_uri}")
    started = time.perf_counter()
    try:
        check(settings.data, settings)
        label_sources = label_snapshots(settings) if labels else []
        if dry_run:
            from civicsense.orchestration.runner import arguments

            typer.echo(json.dumps(arguments(settings, params, label_sources), indent=2))
            return
        if labels:
            typer.echo(f"labels: {len(label_sources)} confirmed snapshot(s)")
        summary, log_path = _run_pipeline(settings, params, cache, verbose,
                                          pick_runner(runner, settings, image), label_sources)
    except (SourceError, IngestError, ValueError, EngineError) as error:
        fail(str(error))
    except RuntimeError as error:  # the local runner reports a failed task this way
        fail(f"pipeline failed: {error}", 1)
    typer.secho(f"registered {summary['model']} version {summary['version']} "
                f"alias={summary['alias'] or 'none'} ({summary['reason']})", fg="green")
    typer.echo(f"val macro recall {summary['val_macro_recall']:.4f}, data "
               f"{summary['data_version']}, MLflow run {summary['run_id']}")
    if len(summary.get("data_versions", [])) > 1:
        typer.echo(f"trained on {', '.join(summary['data_versions'])}")
    if summary_json:
        summary_json.write_text(json.dumps(summary, indent=2))
    typer.echo("next: make serve (the model server), make ui (MLflow UI), make status")
    typer.echo(f"pipeline took {time.perf_counter() - started:.1f} s"
               + (f"; full log: {log_path}" if log_path else ""))


def label_snapshots(settings: Settings) -> list[Path]:
    """What `run --labels` merges after the data: every confirmed labelled snapshot, oldest
    first (civicsense.labeling.snapshots.confirmed_sources)."""
    from civicsense.labeling.snapshots import confirmed_sources

    return list(confirmed_sources(settings))


def _run_pipeline(settings: Settings, params: PipelineParams, cache: bool, verbose: bool,
                  runner: object | None, label_sources: list[Path] | None = None
                  ) -> tuple[dict, Path | None]:
    """The local run, drawn as one line per step with a live bar; everything else to the log."""
    import sys

    from civicsense.cli.console import FULL_DATA_POSTS, RunConsole
    from civicsense.orchestration.runner import run_local, run_log_path

    label_sources = label_sources or []
    if verbose:
        return run_local(settings, params, cache=cache, runner=runner,
                         label_sources=label_sources), None
    log_path = run_log_path(settings)
    console = RunConsole(sys.stdout, params.sample_size or FULL_DATA_POSTS,
                         log_path.parent / "step-seconds.json")
    return run_local(settings, params, cache=cache, runner=runner, observer=console,
                     log_path=log_path, label_sources=label_sources), log_path


def ingest_command(
    data: str = DataOption,
    out: Path = typer.Option(Path("snapshot.parquet"), help="Accepted rows (Parquet)."),
    quarantine: Path = typer.Option(Path("quarantine.parquet"), help="Rejected rows."),
    labels: list[str] = typer.Option([], "--labelled", help="A labelled snapshot (its "
                                     "snapshot.parquet or directory) merged after the data by "
                                     "post id, later wins; repeatable.", show_default="none"),
) -> None:
    """Ingest a data source (plus labelled snapshots) and print the accounting report."""
    from civicsense.data.ingest import IngestError
    from civicsense.data.merge import ingest_sources
    from civicsense.data.sources import SourceError

    settings = _settings(data, None)
    try:
        result = ingest_sources([settings.data, *labels], settings, out, quarantine)
    except (IngestError, SourceError) as error:
        fail(str(error))
    typer.echo(json.dumps(result.report, indent=2))


def compile_command(
    output: Path = typer.Option(None, help="Write only the training pipeline, to this file.",
                                show_default="pipelines/civicsense_training.yaml"),
    output_dir: Path = typer.Option(None, "--output-dir", help="Write all three pipelines "
                                    "into this directory (created if missing).",
                                    show_default="pipelines/; build/pipelines/ with --image"),
    image: str = typer.Option(None, "--image", help="Container image every step runs, e.g. "
                              "the tag `make images` gives: civicsense-components:<version>-"
                              "<git sha>.", show_default=DEFAULT_COMPONENT_IMAGE),
) -> None:
    """Compile the pipeline to IR YAML for the Kubeflow UI (and the labeling pipelines beside
    the default one: pipelines/civicsense_label_export.yaml, civicsense_label_import.yaml).
    With --image the committed pipelines/*.yaml stay as they are (the default image): the
    YAMLs go to build/pipelines/ unless --output or --output-dir says otherwise."""
    from civicsense.orchestration.compiled import TRAINING, check_image
    from civicsense.orchestration.runner import (
        COMPILED_PIPELINE,
        compile_labeling,
        compile_pipeline,
    )

    if output is not None and output_dir is not None:
        fail("give --output (the training pipeline) or --output-dir (all three), not both")
    if output is not None and (output.is_dir() or not output.parent.is_dir()):
        fail(f"--output must be a file in an existing directory, not {output}")
    directory = output_dir or (IMAGE_COMPILE_DIR if image and output is None else None)
    if directory is not None and directory.exists() and not directory.is_dir():
        fail(f"--output-dir must be a directory, not {directory}")
    try:
        if image is not None:
            check_image(image)
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            written = [compile_pipeline(directory / TRAINING, image),
                       *compile_labeling(directory, image)]
        else:
            written = [compile_pipeline(output or COMPILED_PIPELINE, image),
                       *(compile_labeling() if output is None else [])]
    except (ValueError, OSError) as error:
        fail(str(error))
    for path in written:
        typer.echo(f"wrote {path}" + (f" (image {image})" if image else ""))


def _image_settings(data: str | None, image: str | None) -> Settings:
    """Settings with the component image the pipeline's steps run; a bad one exits 2."""
    from civicsense.orchestration.compiled import check_image

    settings = get_settings(data=data, component_image=image)
    try:
        check_image(settings.component_image)
    except ValueError as error:
        fail(str(error))
    return settings


ImageOption = setting_option("component_image", "--image", help="Container image every "
                             "pipeline step runs (the shipped YAML is copied with it into a "
                             "temporary directory when it differs).")
FreshOption = typer.Option(False, "--fresh", help="Compile this tree's pipeline (into a "
                           "temporary directory) instead of using the shipped YAML.")


def submit_command(
    host: str = typer.Option(..., help="Kubeflow Pipelines API endpoint, e.g. "
                             "http://localhost:8080 after a port-forward."),
    data: str = DataOption,
    experiment: str = typer.Option("civicsense", help="KFP experiment name."),
    namespace: str = typer.Option(None, help="Kubeflow profile namespace (multi-user).",
                                  show_default="none: single-user"),
    sample_size: int = typer.Option(DEFAULTS.sample_size, help="Stratified sample (0 = all)."),
    tune: bool = typer.Option(DEFAULTS.tune, "--tune/--no-tune", help="With the Optuna step."),
    trials: int = typer.Option(DEFAULTS.tune_trials, help="Optuna trials with --tune."),
    encoder: bool = typer.Option(DEFAULTS.encoder, "--encoder/--no-encoder",
                                 help="With the encoder fine-tune."),
    labels: bool = typer.Option(False, "--labels", help="Ingest also adds every confirmed "
                                "labelled snapshot on the cluster's state PVC (the run skips "
                                "the step cache)."),
    image: str = ImageOption,
    fresh: bool = FreshOption,
) -> None:
    """Submit a run of the compiled pipeline to a Kubeflow Pipelines endpoint."""
    from civicsense.orchestration.compiled import PipelinePackageError
    from civicsense.orchestration.runner import submit

    settings = _image_settings(data, image)
    params = PipelineParams(sample_size=sample_size, tune=tune, tune_trials=trials,
                            encoder=encoder)
    try:
        run_id = submit(host, settings, params, experiment, namespace, confirmed_labels=labels,
                        fresh=fresh)
    except PipelinePackageError as error:
        fail(str(error))
    except Exception as error:  # kfp.Client raises transport errors of many kinds
        fail(f"could not submit to {host}: {error}", 1)
    typer.echo(f"submitted run {run_id} to {host}")


def schedule_create_command(
    cron: str = typer.Option("0 0 3 * * *", "--cron", help="Six fields, seconds first "
                             "(KFP): 'second minute hour day-of-month month day-of-week'."),
    host: str = typer.Option(..., "--host", help="Kubeflow Pipelines API endpoint."),
    name: str = typer.Option("civicsense-scheduled-retraining", "--name", help="Job name."),
    experiment: str = typer.Option("civicsense", "--experiment", help="KFP experiment."),
    namespace: str = typer.Option(None, "--namespace", help="Kubeflow profile namespace.",
                                  show_default="none: single-user"),
    data: str = DataOption,
    image: str = ImageOption,
    fresh: bool = FreshOption,
) -> None:
    """Create a KFP recurring run of the compiled training pipeline."""
    from civicsense.orchestration.compiled import PipelinePackageError
    from civicsense.orchestration.schedule import create_schedule, validate_cron

    try:
        validate_cron(cron)
    except ValueError as error:
        fail(str(error))
    settings = _image_settings(data, image)
    try:
        job = create_schedule(host, settings, cron, name, experiment, namespace, fresh=fresh)
    except PipelinePackageError as error:
        fail(str(error))
    except Exception as error:  # noqa: BLE001 - transport errors of many kinds
        fail(f"could not create the recurring run on {host}: {error}", 1)
    typer.echo(f"recurring run {getattr(job, 'recurring_run_id', '?')} '{name}' cron '{cron}'")


def register(app: typer.Typer) -> None:
    """Attach the training verbs to the main CLI."""
    app.command("run")(run)
    app.command("ingest")(ingest_command)
    pipeline_app.command("compile")(compile_command)
    pipeline_app.command("submit")(submit_command)
    app.add_typer(pipeline_app, name="pipeline")
    schedule_app.command("create")(schedule_create_command)
    app.add_typer(schedule_app, name="schedule")
