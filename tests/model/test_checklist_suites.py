"""The behaviour suites (CheckList style) on the session's trained champion: every suite meets
its configured minimum pass rate, and the pipeline logged them in the champion's model card."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from civicsense.cli.app import app
from civicsense.training.behaviour import SUITES, run_suites


@pytest.fixture(scope="module")
def champion(trained_home):
    import mlflow

    settings, _ = trained_home
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")


def test_every_suite_meets_its_minimum_pass_rate(champion, trained_home):
    settings, _ = trained_home
    results = run_suites(lambda texts: champion.predict(pd.DataFrame({"text": texts})),
                         settings.behaviour_min_pass_rates)
    assert [r.name for r in results] == list(SUITES)
    rates = {r.name: round(r.pass_rate, 2) for r in results}
    assert all(r.ok for r in results), (rates, [r.failures for r in results if not r.ok])


def test_the_champions_card_carries_slices_calibration_and_behaviour(trained_home):
    settings, _ = trained_home
    result = CliRunner().invoke(app, ["model", "card", "--home", str(settings.home)])
    assert result.exit_code == 0, result.output
    for section in ("## Intended use", "## Slices", "| long |", "## Calibration",
                    "## Behaviour suites", "| negation |", "## Worst confusions", "## Limits"):
        assert section in result.output, section
