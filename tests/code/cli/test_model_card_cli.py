"""`civicsense model card`: prints a version's card; a bad or missing version is one line and
an exit code."""

import pytest
from typer.testing import CliRunner

from civicsense.cli.app import app
from civicsense.settings import Settings
from civicsense.training.model_card import write_card
from tests_support import register_champion_and_challenger

runner = CliRunner()


@pytest.fixture(scope="module")
def home_with_a_card(tmp_path_factory):
    """A registry (v1 champion with a card, v2 challenger without); the --home args."""
    settings = Settings(home=tmp_path_factory.mktemp("cards") / "home", mlflow_tracking_uri="")
    client = register_champion_and_challenger(settings)
    version = client.get_model_version(settings.model_name, "1")
    write_card(client, settings.model_name, "1", version.run_id, "champion",
               "no champion yet", None)
    return ["--home", str(settings.home)]


def invoke(args):
    return runner.invoke(app, args, env={"MLFLOW_TRACKING_URI": ""})


def test_prints_the_champions_card_by_alias_and_by_version(home_with_a_card):
    by_alias = invoke(["model", "card", *home_with_a_card])
    assert by_alias.exit_code == 0, by_alias.output
    assert by_alias.output.startswith("# Model card: civicsense-sentiment version 1")
    assert "sha256:1" in by_alias.output and "## Limits" in by_alias.output
    by_version = invoke(["model", "card", "--version", "1", *home_with_a_card])
    assert by_version.output == by_alias.output


@pytest.mark.parametrize("args,code,message", [
    (["--version", "7"], 1, "has no version or alias '7'"),
    (["--version", "v1"], 2, "--version must be a version number"),
    (["--alias", "challenger"], 1, "version 2 has no model card"),
])
def test_bad_or_missing_version_is_one_line(home_with_a_card, args, code, message):
    result = invoke(["model", "card", *args, *home_with_a_card])
    assert result.exit_code == code
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
