"""Model cards: the Markdown sections, and a card logged with a version on a real registry
(SQLite) and fetched back by version and alias."""

import pytest
from mlflow import MlflowClient

from civicsense.training.model_card import (
    CardError,
    fetch_card,
    quality_markdown,
    render_card,
    slices_table,
    write_card,
)

REPORT = {
    "slices": [{"name": "all", "n": 1200, "candidate": 0.65, "champion": 0.62},
               {"name": "sarcasm", "n": 0, "candidate": None, "champion": None}],
    "calibration": {"ece": 0.11, "macro_recall": 0.65, "kept": "temperature",
                    "temperature": 1.6,
                    "methods": {"temperature": {"ece": 0.03, "macro_recall": 0.65}}},
    "confusions": [{"true": "positive", "predicted": "neutral", "count": 9,
                    "examples": [{"text": "meh\nok", "p": 0.9}]}],
    "behaviour": [{"name": "negation", "cases": 48, "passed": 40, "pass_rate": 0.8333,
                   "min_pass_rate": 0.6, "ok": True, "failures": ["'x' → positive"]}],
    "slice_gate": {"min_rows": 200, "margin": 0.03},
}


def test_slices_table_rows_and_deltas():
    table = slices_table(REPORT)
    assert "| all | 1,200 | 0.650 | 0.620 | +0.030 |" in table
    assert "| sarcasm | 0 | — | — | — |" in table


def test_quality_markdown_has_every_section():
    text = quality_markdown(REPORT)
    for heading in ("## Slices", "## Calibration", "## Behaviour", "## Worst confusions"):
        assert heading in text
    assert "Kept: **temperature**" in text and "- (0.90) meh ok" in text


def test_render_card_lists_data_metrics_use_and_limits():
    card = render_card("m", "3", "challenger", "beats champion", {"data_version": "sha256:ab",
                       "run_id": "r1"}, {"val_macro_recall": 0.65, "val_support_neutral": 9.0},
                       REPORT)
    assert card.startswith("# Model card: m version 3")
    assert "sha256:ab" in card and "| macro_recall | 0.6500 |" in card
    assert "support" not in card.split("## Slices")[0]
    assert "## Intended use" in card and "## Limits" in card
    assert "No quality report" in render_card("m", "1", None, "r", {}, {}, None)
    merged = render_card("m", "4", None, "r", {"data_version": "sha256:m",
                         "data_versions": "sha256:a,sha256:b"}, {}, None)
    assert "- data version(s): sha256:m (trained on: sha256:a, sha256:b)" in merged


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cards")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("c", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "val_macro_recall", 0.65)
    client.create_registered_model("m")
    client.create_model_version("m", f"{run.info.artifact_uri}/model", run.info.run_id,
                                tags={"data_version": "sha256:cd"})
    client.create_model_version("m", f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_registered_model_alias("m", "champion", "1")
    return client, run.info.run_id


def test_card_written_with_a_version_is_fetched_by_version_and_alias(registry):
    client, run_id = registry
    path = write_card(client, "m", "1", run_id, "champion", "no champion yet", REPORT)
    assert client.get_model_version("m", "1").tags["model_card"] == path
    card = fetch_card(client, "m", "1")
    assert "version 1" in card and "sha256:cd" in card and "| macro_recall | 0.6500 |" in card
    assert fetch_card(client, "m", "champion") == card


@pytest.mark.parametrize("ref,message", [("9", "no version or alias '9'"),
                                         ("challenger", "no version or alias"),
                                         ("2", "has no model card")])
def test_missing_cards_are_card_errors(registry, ref, message):
    with pytest.raises(CardError, match=message):
        fetch_card(registry[0], "m", ref)
