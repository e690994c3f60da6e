"""The CLI shell: help everywhere, one-line errors with exit code 2 for bad input."""

import json

import pytest
from typer.testing import CliRunner

from civicsense.cli.app import app
from tests_support import ROOT

runner = CliRunner()
TESTS = ROOT / "tests"
FIXTURES_CSV = str(TESTS / "fixtures" / "posts.csv")
NOT_DATA = str(TESTS.parent / "README.md")


@pytest.mark.parametrize("command", [[], ["run"], ["ingest"], ["pipeline"],
                                     ["pipeline", "compile"], ["pipeline", "submit"]])
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.mark.parametrize("args,message", [
    (["run", "--data", "/nonexistent/data"], "data source not found"),
    (["run", "--data", NOT_DATA], "no ingestible files"),
    (["run", "--split", "alphabetical"], "--split must be"),
    (["run", "--validation-fraction", "1.5"], "--validation-fraction"),
    (["run", "--tune", "--trials", "0"], "--trials must be at least 1"),
    (["ingest", "--data", "ftp://host/file"], "unsupported data source scheme"),
    (["pipeline", "compile", "--output", "/nonexistent/dir/p.yaml"], "--output must be a file"),
    (["pipeline", "compile", "--output", "/"], "--output must be a file"),
])
def test_bad_input_is_a_one_line_error(args, message, tmp_path):
    result = runner.invoke(app, [*args, *(["--home", str(tmp_path)] if args[0] == "run" else [])])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_ingest_writes_snapshot_and_report(tmp_path):
    out, quarantine = tmp_path / "s.parquet", tmp_path / "q.parquet"
    result = runner.invoke(app, ["ingest", "--data", FIXTURES_CSV, "--out", str(out),
                                 "--quarantine", str(quarantine)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["records_read"] == report["accepted"] + report["quarantined"] == 3
    assert out.exists() and quarantine.exists()


@pytest.mark.parametrize("option", [["--batch", "0"], ["--limit", "-1"]])
def test_replay_refuses_a_batch_below_1_or_a_negative_limit(option):
    result = runner.invoke(app, ["replay", FIXTURES_CSV, "--url", "http://127.0.0.1:9", *option])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: --batch must be 1 or more")
