"""The tuning report: Optuna's optimization-history and parallel-coordinates plots (matplotlib,
PNG) and one self-contained HTML page with them, the best parameters and every trial."""

from __future__ import annotations

import base64
import html
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the tuning-off page needs no Optuna
    import optuna

PLOTS = {"optimization_history": "Optimization history",
         "parallel_coordinate": "Parallel coordinates (completed trials)"}


def write_plots(study: optuna.Study, folder: Path) -> dict[str, Path]:
    """The two plots as PNG files in folder (a plot Optuna cannot draw, e.g. parallel
    coordinates of a single completed trial, is skipped)."""
    import matplotlib
    from optuna.trial import TrialState

    matplotlib.use("Agg")  # no display in a pipeline step
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    written: dict[str, Path] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
        for name in PLOTS:
            if name == "parallel_coordinate" and sum(
                    t.state == TrialState.COMPLETE for t in study.trials) < 2:
                continue
            axes = getattr(optuna_plots, f"plot_{name}")(study)
            figure = axes.figure
            figure.set_size_inches(11 if name == "parallel_coordinate" else 9, 4.5)
            figure.tight_layout()
            path = folder / f"{name}.png"
            figure.savefig(path, dpi=90)
            plt.close(figure)
            written[name] = path
    return written


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row.values())
                   + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"  # NaN: empty
    return "" if value is None else str(value)


def render_html(summary: dict[str, Any], best: dict[str, Any], trials: list[dict[str, Any]],
                plots: dict[str, Path]) -> str:
    """The report page; plots are embedded (data: URIs), so it renders offline anywhere (the
    Kubeflow UI's HTML viewer, the MLflow artifact view)."""
    images = "".join(
        f"<h2>{html.escape(PLOTS[name])}</h2><img alt='{name}' style='max-width:100%' "
        f"src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'/>"
        for name, path in plots.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>CivicSense tuning</title>"
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>"
        "<h1>XGBoost tuning (Optuna TPE, median pruning)</h1>"
        "<p>Objective: macro recall on a validation split carved from the training split "
        "(the pipeline's validation posts are not used).</p>"
        f"{_table([summary])}<h2>Best parameters</h2>{_table([best])}{images}"
        f"<h2>Trials</h2>{_table(trials)}</body></html>")


def write_report(study: optuna.Study, summary: dict[str, Any], best: dict[str, Any],
                 folder: Path) -> Path:
    """Plots and tune-report.html into folder; the report's path."""
    plots = write_plots(study, folder)
    trials = [{"number": t.number, "state": t.state.name, "value": t.value, **t.params}
              for t in study.trials]
    path = folder / "tune-report.html"
    path.write_text(render_html(summary, best, trials, plots))
    return path


def disabled_html(params: dict[str, Any]) -> str:
    """The page the step shows when tuning is off: which parameters train gets instead."""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>CivicSense tuning</title>"
            "</head><body><h1>Tuning off</h1><p>train uses the pipeline's parameters (run with "
            "<code>tune=true</code>, <code>civicsense run --tune</code> or "
            f"<code>make run TUNE=1</code> to search):</p>{_table([params])}</body></html>")
