"""The `civicsense` command line: the verbs the Makefile wraps, as a thin Typer shell."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import typer

from civicsense.cli_errors import fail
from civicsense.cli_monitor import register as register_monitor
from civicsense.cli_serving import register as register_serving
from civicsense.params import PipelineParams
from civicsense.settings import Settings, get_settings

app = typer.Typer(help="CivicSense: sentiment on social reforms, trained by a Kubeflow "
                  "pipeline and served by KServe.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
pipeline_app = typer.Typer(help="Compile or submit the training pipeline.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")

DEFAULTS = PipelineParams()
DataOption = typer.Option(None, "--data", help="Data source: path, https:// URL or gs:// URI "
                          "[env CIVICSENSE_DATA; default the ../shared/data mirror].")
HomeOption = typer.Option(None, "--home", help="State directory [env CIVICSENSE_HOME; "
                          "default ./.civicsense].")


def _settings(data: str | None, home: Path | None) -> Settings:
    return get_settings(data=data, home=home)


@app.command()
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
    cache: bool = typer.Option(True, help="Reuse unchanged steps from earlier local runs."),
    summary_json: Path = typer.Option(None, help="Also write the run summary to this file."),
) -> None:
    """Run the training pipeline end to end on this machine (KFP local runner)."""
    from civicsense.ingest import IngestError
    from civicsense.pipeline import run_local
    from civicsense.sources import SourceError, check

    if split not in {"time", "random"}:
        fail(f"--split must be 'time' or 'random', not {split!r}")
    if not 0 < validation_fraction < 1:
        fail("--validation-fraction must be between 0 and 1")
    settings = _settings(data, home)
    params = PipelineParams(sample_size, split, validation_fraction, n_estimators, max_depth,
                            learning_rate, DEFAULTS.seed, gate_margin)
    typer.echo(f"data: {settings.data}\nhome: {settings.home_dir}\n"
               f"tracking: {settings.tracking_uri}")
    started = time.perf_counter()
    try:
        check(settings.data, settings)
        summary = run_local(settings, params, cache=cache)
    except (SourceError, IngestError) as error:
        fail(str(error))
    except RuntimeError as error:  # the local runner reports a failed task this way
        fail(f"pipeline failed: {error}", 1)
    typer.secho(f"\nregistered {summary['model']} version {summary['version']} "
                f"alias={summary['alias'] or 'none'} ({summary['reason']})", fg="green")
    typer.echo(json.dumps(summary, indent=2))
    if summary_json:
        summary_json.write_text(json.dumps(summary, indent=2))
    typer.echo(f"pipeline took {time.perf_counter() - started:.1f} s")


@app.command("ingest")
def ingest_command(
    data: str = DataOption,
    out: Path = typer.Option(Path("snapshot.parquet"), help="Accepted rows (Parquet)."),
    quarantine: Path = typer.Option(Path("quarantine.parquet"), help="Rejected rows."),
) -> None:
    """Ingest a data source alone and print the accounting report."""
    import tempfile

    from civicsense.ingest import IngestError, ingest
    from civicsense.sources import SourceError, fetch

    settings = _settings(data, None)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            result = ingest(fetch(settings.data, Path(workdir), settings))
    except (IngestError, SourceError) as error:
        fail(str(error))
    result.accepted.to_parquet(out, index=False)
    result.quarantined.to_parquet(quarantine, index=False)
    typer.echo(json.dumps(result.report, indent=2))


@pipeline_app.command("compile")
def compile_command(
    output: Path = typer.Option(None, help="Where to write the IR YAML "
                                "[default pipelines/civicsense_training.yaml]."),
) -> None:
    """Compile the pipeline to IR YAML for the Kubeflow UI."""
    from civicsense.pipeline import COMPILED_PIPELINE, compile_pipeline

    typer.echo(f"wrote {compile_pipeline(output or COMPILED_PIPELINE)}")


@pipeline_app.command("submit")
def submit_command(
    host: str = typer.Option(..., help="Kubeflow Pipelines API endpoint, e.g. "
                             "http://localhost:8080 after a port-forward."),
    data: str = DataOption,
    experiment: str = typer.Option("civicsense", help="KFP experiment name."),
    namespace: str = typer.Option(None, help="Kubeflow profile namespace (multi-user)."),
    sample_size: int = typer.Option(DEFAULTS.sample_size, help="Stratified sample (0 = all)."),
) -> None:
    """Submit a run of the compiled pipeline to a Kubeflow Pipelines endpoint."""
    from civicsense.pipeline import submit

    settings = _settings(data, None)
    try:
        run_id = submit(host, settings, PipelineParams(sample_size=sample_size), experiment,
                        namespace)
    except Exception as error:  # kfp.Client raises transport errors of many kinds
        fail(f"could not submit to {host}: {error}", 1)
    typer.echo(f"submitted run {run_id} to {host}")


register_serving(app)
register_monitor(app)


def main() -> None:  # pragma: no cover - console entry point
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
