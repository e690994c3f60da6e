"""Model cards: the quality report as Markdown (slices, calibration, confusions, behaviour),
the card of a registered version (data, metrics, intended use, limits), logged and fetched."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

CARD_DIR, CARD_FILE = "model_card", "model_card.md"
INTENDED_USE = (
    "Sentiment (negative / neutral / positive) of short English social-media posts about "
    "public debates and social reforms, shown as a badge per post and aggregated per reform "
    "in the CivicSense browser extension. An aid to reading, not a decision about a person.")
LIMITS = (
    "- Trained on SemEval/TweetEval tweets from 2013–2016: language, topics and emoji use "
    "drift; the drift monitor watches for it.",
    "- English only; sarcasm, irony and mixed sentiment are often wrong (see the slices).",
    "- Probabilities are not calibrated unless the calibration section says one was kept.",
    "- Not for moderation, profiling or any decision about individuals.",
)


class CardError(Exception):
    """No such version, or the version has no model card."""


def _recall(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def slices_table(report: dict) -> str:
    lines = ["| slice | n | candidate macro recall | champion | Δ |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for s in report["slices"]:
        delta = (None if s["candidate"] is None or s["champion"] is None
                 else s["candidate"] - s["champion"])
        lines.append(f"| {s['name']} | {s['n']:,} | {_recall(s['candidate'])} | "
                     f"{_recall(s['champion'])} | {'—' if delta is None else f'{delta:+.3f}'} |")
    return "\n".join(lines)


def calibration_section(report: dict) -> str:
    c = report["calibration"]
    lines = ["| probabilities | ECE | macro recall |", "| --- | ---: | ---: |",
             f"| as trained | {c['ece']:.4f} | {c['macro_recall']:.4f} |"]
    lines += [f"| {method} (2-fold on validation) | {s['ece']:.4f} | {s['macro_recall']:.4f} |"
              for method, s in c["methods"].items()]
    lines.append(f"\nKept: **{c['kept']}** (kept only when ECE falls and macro recall does "
                 f"not drop); fitted temperature {c['temperature']:.3f}.")
    return "\n".join(lines)


def behaviour_table(report: dict) -> str:
    lines = ["| suite | cases | pass rate | minimum | ok |", "| --- | ---: | ---: | ---: | --- |"]
    for r in report["behaviour"]:
        lines.append(f"| {r['name']} | {r['cases']} | {r['pass_rate']:.2f} | "
                     f"{r['min_pass_rate']:.2f} | {'yes' if r['ok'] else 'NO'} |")
    failures = [f"- {r['name']}: {f}" for r in report["behaviour"] for f in r["failures"][:2]]
    return "\n".join(lines + (["", "Some failures:", *failures] if failures else []))


def confusions_section(report: dict) -> str:
    parts = []
    for c in report["confusions"]:
        parts.append(f"**{c['true']} → {c['predicted']}** ({c['count']:,} posts)")
        parts += [f"- ({e['p']:.2f}) {e['text'].replace(chr(10), ' ')[:200]}"
                  for e in c["examples"]]
        parts.append("")
    return "\n".join(parts).strip() or "No errors."


def quality_markdown(report: dict) -> str:
    """The report as Markdown (the evaluate step's KFP visualization, part of the card)."""
    gate = report["slice_gate"]
    return "\n\n".join([
        f"## Slices (validation)\n\nThe gate checks slices of ≥ {gate['min_rows']} posts "
        f"(margin {gate['margin']}).\n\n{slices_table(report)}",
        f"## Calibration\n\n{calibration_section(report)}",
        f"## Behaviour suites (CheckList style)\n\n{behaviour_table(report)}",
        f"## Worst confusions\n\n{confusions_section(report)}",
    ]) + "\n"


def render_card(model: str, version: str, alias: str | None, reason: str,
                tags: dict[str, str], metrics: dict[str, float], report: dict | None) -> str:
    """The Markdown model card of one registered version."""
    data = tags.get("data_version", "unknown")
    sources = tags.get("data_versions", data).replace(",", ", ")  # each source's own version
    if sources != data:
        data = f"{data} (trained on: {sources})"
    headline = ["| metric | validation |", "| --- | ---: |"] + [
        f"| {name.removeprefix('val_')} | {value:.4f} |" for name, value in sorted(metrics.items())
        if name.startswith("val_") and not name.startswith(("val_ece_", "val_macro_recall_"))
        and "support" not in name]
    sections = [
        f"# Model card: {model} version {version}",
        f"- alias: {alias or 'none'} (gate: {reason})\n- data version(s): {data}\n"
        f"- training run: {tags.get('run_id', 'unknown')}\n"
        f"- pipeline run: {tags.get('pipeline_run', 'unknown')}",
        f"## Intended use\n\n{INTENDED_USE}",
        "## Metrics\n\n" + "\n".join(headline),
        quality_markdown(report).strip() if report else "## Quality\n\nNo quality report.",
        "## Limits\n\n" + "\n".join(LIMITS),
    ]
    return "\n\n".join(sections) + "\n"


def log_card(client: MlflowClient, name: str, version: str, run_id: str, card: str) -> str:
    """Log the card to the version's run (model_card/v<version>.md) and tag the version with
    its artifact path."""
    path = f"{CARD_DIR}/v{version}.md"
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / f"v{version}.md"
        file.write_text(card)
        client.log_artifact(run_id, str(file), CARD_DIR)
    client.set_model_version_tag(name, version, "model_card", path)
    return path


def write_card(client: MlflowClient, name: str, version: str, run_id: str, alias: str | None,
               reason: str, report: dict | None) -> str:
    """Render the card of a just registered version from its tags, its run's metrics and the
    quality report, and log it (the artifact path)."""
    tags = dict(client.get_model_version(name, version).tags) | {"run_id": run_id}
    metrics = client.get_run(run_id).data.metrics
    return log_card(client, name, version, run_id,
                    render_card(name, version, alias, reason, tags, metrics, report))


def fetch_card(client: MlflowClient, name: str, ref: str) -> str:
    """The card of version `ref` (a number or an alias); CardError when there is none."""
    try:
        found = (client.get_model_version(name, ref) if ref.isdigit()
                 else client.get_model_version_by_alias(name, ref))
    except MlflowException as error:
        if error.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            raise CardError(f"{name} has no version or alias {ref!r}") from error
        raise CardError(f"the registry failed: {error}") from error
    path = found.tags.get("model_card")
    if not path or not found.run_id:
        raise CardError(f"{name} version {found.version} has no model card (registered before "
                        "model cards)")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return Path(client.download_artifacts(found.run_id, path, tmp)).read_text()
        except (MlflowException, OSError) as error:
            raise CardError(f"{name} version {found.version}: model card unreadable "
                            f"({error})") from error
