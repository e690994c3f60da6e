"""Options shared by several CLI verbs, declared once; `setting_option`: an option backed by
a Settings field, whose --help shows the field's env variable and default; `iso_time`: the
value of a --since/--until option as a time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer

from civicsense.cli.errors import fail
from civicsense.settings import Settings


def setting_env(field: str) -> str:
    """The env variable Settings reads for `field` (CIVICSENSE_<FIELD>, or its alias)."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    return alias if isinstance(alias, str) else f"CIVICSENSE_{field.upper()}"


def setting_default(field: str) -> str:
    info = Settings.model_fields[field]
    return "none" if info.default is None else str(info.default)


def setting_option(field: str, *flags: str, help: str, default_text: str | None = None,
                   **extra: Any) -> Any:
    """A --flag for Settings.<field>: None unless given (Settings then reads the env and its
    default); --help shows both. No square brackets in help: rich markup would eat them."""
    return typer.Option(None, *flags, help=help, envvar=setting_env(field), show_envvar=True,
                        show_default=default_text or setting_default(field), **extra)


def iso_time(text: str | None, option: str) -> datetime | None:
    """An ISO date/time given to `option`, naive read as UTC (None when not given); anything
    else exits 2 with a reason naming the option."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} must be an ISO date/time such as 2026-11-23T18:00, not {text!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


DataOption = setting_option("data", "--data", help="Data source: path, https:// URL or gs:// "
                            "URI.", default_text="the ../shared/data mirror, else TweetEval's "
                            "public URL")
HomeOption = setting_option("home", "--home", help="State directory (MLflow, Feast, KFP runs, "
                            "logs, reports).")
DryRunOption = typer.Option(False, "--dry-run", help="Print the exact patch (and alias moves) "
                            "that would be sent; change nothing.")
NamespaceOption = setting_option("k8s_namespace", "--namespace", "-n",
                                 help="Kubernetes namespace.")
ContextOption = setting_option("k8s_context", "--context", help="kubectl context.",
                               default_text="the current context")
