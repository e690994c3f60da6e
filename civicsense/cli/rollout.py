"""CLI verbs for the canary rollout (`civicsense rollout canary|promote|rollback|status|reconcile`):
thin shells over civicsense.rollout.verbs."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from civicsense.cli.errors import fail
from civicsense.cli.options import ContextOption, DryRunOption, NamespaceOption
from civicsense.settings import get_settings

rollout_app = typer.Typer(help="Canary rollout of the challenger on the InferenceService "
                          "(Standard or Serverless mode), promotion and rollback with the MLflow "
                          "aliases, status and reconciliation.", no_args_is_help=True)
# 128 + the signal's number, as shells report a process stopped by that signal.
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
ModeOption = typer.Option("standard", "--mode", help="KServe deployment mode of the "
                          "InferenceService: standard (RawDeployment, KServe's default; "
                          "spec.canary) or serverless (Knative; canaryTrafficPercent).")


class _Terminated(Exception):
    """SIGTERM, raised where the process was so the rollout stops between two steps."""


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM raises (like Ctrl-C's KeyboardInterrupt) while a verb runs, so both end with a
    one-line message and the intent kept; the previous handler comes back afterwards."""
    def on_term(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _run(verb: Callable[..., dict], namespace: str | None, context: str | None, **kwargs) -> dict:
    from civicsense.rollout.verbs import RolloutError

    settings = get_settings(k8s_namespace=namespace, k8s_context=context)
    interrupted = ("interrupted: any recorded intent is kept (journal under "
                   f"{settings.home}/rollout): run `civicsense rollout reconcile`")
    try:
        with _signals_raise():
            return verb(settings, **kwargs)
    except RolloutError as error:
        fail(str(error), 1)
    except KeyboardInterrupt:
        fail(interrupted, EXIT_SIGINT)
    except _Terminated:
        fail(interrupted, EXIT_SIGTERM)
    raise AssertionError("unreachable")  # pragma: no cover - fail() always exits


@rollout_app.command("canary")
def canary_command(
    percent: int = typer.Option(10, "--percent", min=1, max=99,
                                help="Share of traffic for the challenger (serverless); in "
                                "standard mode the share of replicas only."),
    mode: str = ModeOption, dry_run: bool = DryRunOption, namespace: str = NamespaceOption,
    context: str = ContextOption,
) -> None:
    """Put the challenger beside the champion with PERCENT of the traffic (Knative mode; in
    Standard mode KServe v0.20.0 gives the canary replicas but no traffic)."""
    from civicsense.rollout.verbs import canary

    if mode not in ("standard", "serverless"):
        fail(f"--mode must be standard or serverless, not {mode!r}")
    plan = _run(canary, namespace, context, percent=percent, mode=mode, dry_run=dry_run,
                log=_say)
    typer.echo(json.dumps(plan, indent=2))


@rollout_app.command("promote")
def promote_command(dry_run: bool = DryRunOption, namespace: str = NamespaceOption,
                    context: str = ContextOption) -> None:
    """All traffic to the canary, then `champion` to its version (old one: `previous`)."""
    from civicsense.rollout.verbs import promote

    typer.echo(json.dumps(_run(promote, namespace, context, dry_run=dry_run, log=_say),
                          indent=2))


@rollout_app.command("rollback")
def rollback_command(dry_run: bool = DryRunOption, namespace: str = NamespaceOption,
                     context: str = ContextOption) -> None:
    """During a canary: all traffic back to the champion. After a promotion: the `previous`
    version back, and `champion` to it."""
    from civicsense.rollout.verbs import rollback

    typer.echo(json.dumps(_run(rollback, namespace, context, dry_run=dry_run, log=_say),
                          indent=2))


def _describe(report: dict) -> list[str]:
    def version(v):
        return "?" if v is None else v

    split = " | ".join(f"{t['role']}: version {version(t['version'])} {t['percent']}%"
                       for t in report["traffic"])
    aliases = report["aliases"]
    named = ("unreadable" if aliases is None else
             " ".join(f"{a}={v or '-'}" for a, v in aliases.items()))
    lines = [f"inferenceservice: {report['namespace']}/{report['inferenceservice']} "
             f"({report['mode']} mode)", f"traffic: {split}"]
    if report["reported_by_kserve"]:
        lines.append(f"reported by KServe: {json.dumps(report['reported_by_kserve'])}")
    lines.append(f"aliases: {named}")
    lines.append("agree: yes" if report["agree"] else
                 "agree: NO — " + "; ".join(report["problems"]))
    return lines


@rollout_app.command("status")
def status_command(namespace: str = NamespaceOption, context: str = ContextOption,
                   as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The live traffic split and the aliases, and whether they agree (exit 1 if not)."""
    from civicsense.rollout.verbs import rollout_status

    report = _run(rollout_status, namespace, context)
    typer.echo(json.dumps(report, indent=2) if as_json else "\n".join(_describe(report)))
    raise typer.Exit(0 if report["agree"] else 1)


@rollout_app.command("reconcile")
def reconcile_command(namespace: str = NamespaceOption, context: str = ContextOption) -> None:
    """Finish an interrupted canary/promote/rollback from its recorded intent (cluster first,
    aliases second), or check that traffic and aliases agree."""
    from civicsense.rollout.verbs import reconcile_rollout

    typer.echo(json.dumps(_run(reconcile_rollout, namespace, context, log=_say), indent=2))


def register(app: typer.Typer) -> None:
    """Attach the rollout verbs to the main CLI."""
    app.add_typer(rollout_app, name="rollout")
