"""Each interruption of a promotion injected for real — SIGINT and SIGTERM between the cluster
patch and the alias moves, the registry's database made unreadable mid-move, kubectl timing out
after and before the server applied the patch — on a real SQLite registry and the stand-in
kubectl: the intent survives, `status` says they disagree, `reconcile` brings them together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from test_rollout_kubectl import URI, make_registry, make_standin, serving_isvc
from typer.testing import CliRunner

from civicsense.cli.app import app
from civicsense.rollout.intent import Journal
from civicsense.rollout.verbs import (
    INTENT_ANNOTATION,
    KubectlCluster,
    RolloutError,
    patched_inference_service,
    promote,
    reconcile_rollout,
)
from civicsense.training.registry import CHALLENGER, CHAMPION, PREVIOUS, alias_snapshot
from tests_support import CIVICSENSE

pytestmark = pytest.mark.integration  # real processes, seconds each: `make test`, not test-fast

NAME = "civicsense-sentiment"
BEFORE = {CHAMPION: "1", CHALLENGER: "2", PREVIOUS: None}
PROMOTED = {CHAMPION: "2", CHALLENGER: None, PREVIOUS: "1"}


@pytest.fixture
def canary_running(tmp_path, monkeypatch):
    """(settings, client, stand-in, mode) with version 2 on a 10% canary (Standard mode)."""
    settings, client = make_registry(tmp_path, monkeypatch)
    isvc = patched_inference_service(serving_isvc("standard"), "canary", "standard",
                                     storage_uri=URI["2"], version="2", run_id="none")
    standin = make_standin(tmp_path / "kubectl", isvc, monkeypatch)
    monkeypatch.setenv("CIVICSENSE_KUBECTL_TIMEOUT", "2")
    return settings, client, standin


def rollout(*args: str) -> subprocess.CompletedProcess:
    """`civicsense rollout …` in its own process (PATH, home and timeout from the fixture): the
    interrupted verb, so signals and timeouts hit a real process."""
    return subprocess.run([str(CIVICSENSE), "rollout", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=180, check=False,
                          preexec_fn=_as_from_a_terminal)


def _as_from_a_terminal() -> None:
    """SIGINT as a terminal's Ctrl-C finds it: a test run started in the background (`nohup …
    &`) hands its children SIGINT ignored, and Python then installs no KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def then(*args: str):
    """The follow-up commands (status, reconcile…), in this process: the same CLI, faster."""
    return CliRunner().invoke(app, ["rollout", *args])


def promoted_on_the_cluster(isvc: dict) -> bool:
    spec = isvc["spec"]
    return "canary" not in spec and spec["predictor"]["model"]["storageUri"] == URI["2"]


def assert_reconciled(client, standin) -> None:
    shown = then("status")
    assert shown.exit_code == 1 and "unfinished promote" in shown.stdout, shown.output
    fixed = then("reconcile")
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.stdout)["completed"]
    assert alias_snapshot(client, NAME) == PROMOTED
    assert promoted_on_the_cluster(standin.isvc())
    assert INTENT_ANNOTATION not in standin.isvc()["metadata"]["annotations"]
    shown = then("status")
    assert shown.exit_code == 0 and "agree: yes" in shown.stdout, shown.output
    # Once more is a no-op that still checks agreement.
    assert then("reconcile").exit_code == 0


@pytest.mark.parametrize("signal_name, exit_code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_between_the_cluster_patch_and_the_alias_moves(canary_running, signal_name,
                                                                 exit_code, monkeypatch):
    settings, client, standin = canary_running
    # The signal ends the patch, not a timeout: on a loaded machine the stand-in kubectl may
    # take longer than the fixture's short timeout just to start.
    monkeypatch.setenv("CIVICSENSE_KUBECTL_TIMEOUT", "120")
    standin.fail_next_spec_patch(do="signal", signal=signal_name)
    stopped = rollout("promote")
    assert stopped.returncode == exit_code, stopped.stderr
    assert "interrupted" in stopped.stderr and "rollout reconcile" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    # The cluster has the promotion, the aliases do not: exactly the reported bug's state …
    assert promoted_on_the_cluster(standin.isvc())
    assert alias_snapshot(client, NAME) == BEFORE
    # … but the intent is on record, in the journal and on the object.
    annotation = json.loads(standin.isvc()["metadata"]["annotations"][INTENT_ANNOTATION])
    assert annotation["action"] == "promote" and annotation["aliases"] == PROMOTED
    assert Journal.under(settings.home_dir).pending(NAME, "civicsense").id == annotation["id"]
    blocked = then("canary")
    assert blocked.exit_code == 1 and "unfinished promote" in blocked.stderr
    assert_reconciled(client, standin)


def break_registry_on_next_patch(settings, standin) -> tuple[Path, Path]:
    db = settings.home_dir / "mlflow.db"
    backup = db.with_suffix(".backup")
    standin.fail_next_spec_patch(do="break-registry", db=str(db), backup=str(backup))
    return db, backup


def restore(db: Path, backup: Path) -> None:
    with db.open("r+b") as fixed:  # in place, as it was broken
        fixed.write(backup.read_bytes())
        fixed.truncate()


def test_a_registry_outage_mid_move_is_finished_not_reverted(canary_running):
    settings, client, standin = canary_running
    db, backup = break_registry_on_next_patch(settings, standin)
    failed = rollout("promote")
    assert failed.returncode == 1
    assert "moving the aliases" in failed.stderr and "rollout reconcile" in failed.stderr
    # Traffic stays promoted (no revert to the canary's 10% behind the aliases' back).
    assert promoted_on_the_cluster(standin.isvc())
    down = then("status")
    assert down.exit_code == 1 and "registry is unreachable" in down.stdout, down.output
    still_down = then("reconcile")
    assert still_down.exit_code == 1 and "intent" in still_down.stderr
    restore(db, backup)
    assert alias_snapshot(client, NAME) == BEFORE
    assert_reconciled(client, standin)


def test_reconcile_from_the_annotation_when_the_journal_is_elsewhere(canary_running):
    """Another machine started the promotion: only the object's annotation knows the intent."""
    settings, client, standin = canary_running
    db, backup = break_registry_on_next_patch(settings, standin)
    cluster = KubectlCluster(kubectl=str(standin.kubectl), timeout=20)
    with pytest.raises(RolloutError, match="moving the aliases"):
        promote(settings, cluster=cluster, client=client)
    restore(db, backup)
    Journal.under(settings.home_dir).path.unlink()
    done = reconcile_rollout(settings, cluster=cluster, client=client)
    assert done["completed"] and done["action"] == "promote"
    assert alias_snapshot(client, NAME) == PROMOTED
    assert INTENT_ANNOTATION not in standin.isvc()["metadata"]["annotations"]


def test_a_kubectl_timeout_after_the_server_applied_it_is_unknown_then_reconciled(
        canary_running):
    _, client, standin = canary_running
    standin.fail_next_spec_patch(do="hang-after", seconds=60)
    done = rollout("promote")
    assert done.returncode == 0, done.stderr
    assert "outcome unknown (the server may have applied it), reconciling" in done.stderr
    assert "patch failed" not in done.stderr + done.stdout
    assert alias_snapshot(client, NAME) == PROMOTED
    assert promoted_on_the_cluster(standin.isvc())
    assert then("status").exit_code == 0


def test_kubectl_timeouts_before_the_server_applied_it_keep_the_intent(canary_running):
    _, client, standin = canary_running
    hang = {"do": "hang-before", "seconds": 60}
    (standin.folder / "faults.json").write_text(json.dumps([hang, hang]))
    unknown = rollout("promote")
    assert unknown.returncode == 1
    assert "still unknown after 2 kubectl timeouts" in unknown.stderr
    assert "patch failed" not in unknown.stderr
    assert "canary" in standin.isvc()["spec"] and alias_snapshot(client, NAME) == BEFORE
    assert_reconciled(client, standin)
