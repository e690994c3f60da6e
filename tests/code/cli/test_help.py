"""--help of every command shows each option's help in full, its env variable and its default,
and README's CLI table lists exactly the commands there are, with the same env variables."""

import itertools
import re

import pytest
import typer
from typer.testing import CliRunner

from civicsense.cli.app import build_app
from civicsense.cli.options import setting_env
from tests_support import ROOT

runner = CliRunner()


def commands(group, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """Every leaf command by its path (Typer vendors its own click: duck typing)."""
    found: dict[tuple[str, ...], object] = {}
    for name, command in group.commands.items():
        path = (*prefix, name)
        if hasattr(command, "commands"):
            found.update(commands(command, path))
        else:
            found[path] = command
    return found


ROOT_COMMAND = typer.main.get_command(build_app())
COMMANDS = commands(ROOT_COMMAND)


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def rendered_help(path: tuple[str, ...]) -> str:
    result = runner.invoke(build_app(), [*path, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return flat(result.output)


def options(command) -> list:
    return [p for p in command.params if p.param_type_name == "option" and p.name != "help"]


def test_there_are_commands_to_check():
    assert {("run",), ("serve",), ("monitor",), ("status",), ("pipeline", "submit")} <= set(
        COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_help_shows_every_option_with_its_env_variable_and_default(path):
    text = rendered_help(path)
    for option in options(COMMANDS[path]):
        assert "[" not in (option.help or ""), f"{option.name}: rich markup eats [..] in help"
        assert flat(option.help or "") in text, f"{option.name}: help text lost"
        if option.envvar:
            assert f"env var: {option.envvar}" in text, option.name
        if option.required:
            assert "required" in text
        elif not (option.is_flag and not option.secondary_opts):
            assert option.show_default is not False, option.name
            shown = (option.show_default if isinstance(option.show_default, str)
                     else option.default)
            if option.secondary_opts:  # --x/--no-x: Typer names the default side
                shown = (option.opts if option.default else option.secondary_opts)[0][2:]
            assert shown is not None, f"{option.name}: no default shown"
            assert f"default: ({shown})" in text or f"default: {shown}" in text, option.name


def test_options_backed_by_settings_name_the_variable_settings_reads():
    serve = COMMANDS[("serve",)]
    assert {o.envvar for o in options(serve)} == {
        setting_env(f) for f in ("serve_port", "serve_model_uri", "serve_workers", "max_batch",
                                 "max_text_chars")}
    assert setting_env("serve_port") == "CIVICSENSE_SERVE_PORT"
    assert setting_env("mlflow_tracking_uri") == "MLFLOW_TRACKING_URI"


def readme_cli_table() -> dict[tuple[str, ...], set[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## CLI\n"):]
    section = section[:section.index("\n## ", 5)]
    rows: dict[tuple[str, ...], set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.match(r"`civicsense ([^`]*)`", cells[0]) if len(cells) >= 3 else None
        if match:  # the command's words, up to its first option or argument
            word = re.compile("[a-z][a-z0-9]*").fullmatch
            words = tuple(itertools.takewhile(word, match[1].split()))
            rows[words] = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[2]))
    return rows


def test_readme_cli_table_matches_the_commands_and_their_env_variables():
    table = readme_cli_table()
    assert set(table) == set(COMMANDS)
    for path, variables in table.items():
        assert variables == {o.envvar for o in options(COMMANDS[path]) if o.envvar}, path
