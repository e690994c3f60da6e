"""Benchmark of the training pipeline as a user runs it: a cold `civicsense run` on a fresh
state directory, then unchanged reruns (cache hits); prints times and the model's quality."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import typer

from civicsense.settings import get_settings


def timed_run(home: Path, data: str, sample_size: int) -> tuple[float, dict]:
    """Wall time of one `civicsense run` in a subprocess, and its summary."""
    summary_path = home / "summary.json"
    command = [sys.executable, "-m", "civicsense.cli", "run", "--home", str(home), "--data", data,
               "--sample-size", str(sample_size), "--summary-json", str(summary_path)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, json.loads(summary_path.read_text())


def main(
    data: str = typer.Option(None, help="Data source [default: the mirror]."),
    sample_size: int = typer.Option(0, help="0 = the full data."),
    reruns: int = typer.Option(3, help="Unchanged reruns after the cold run."),
) -> None:
    """Time a cold pipeline run and unchanged reruns; print a markdown table."""
    settings = get_settings(data=data)
    with tempfile.TemporaryDirectory(prefix="civicsense-bench-") as tmp:
        home = Path(tmp)
        typer.echo(f"cold run on {settings.data} (sample {sample_size or 'all'}) …", err=True)
        cold, summary = timed_run(home, settings.data, sample_size)
        warm = []
        for i in range(reruns):
            typer.echo(f"unchanged rerun {i + 1}/{reruns} …", err=True)
            warm.append(timed_run(home, settings.data, sample_size)[0])
    typer.echo("| measure | value | target |\n| --- | --- | --- |")
    typer.echo(f"| cold `civicsense run` (setup done) | {cold:.0f} s | ≤ 300 s |")
    if warm:
        typer.echo(f"| unchanged rerun, median of {len(warm)} | {statistics.median(warm):.1f} s "
                   f"(min {min(warm):.1f}, max {max(warm):.1f}) | ≤ 30 s |")
    typer.echo(f"| validation macro recall | {summary['val_macro_recall']:.4f} | ≥ 0.62 |")
    typer.echo(f"| rerun / cold ratio | {statistics.median(warm) / cold:.2f} | |" if warm else "")


if __name__ == "__main__":
    typer.run(main)
