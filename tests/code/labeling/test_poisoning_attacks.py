"""The label-poisoning attacks replayed end to end: feedback through the server's own routes
(its app stack, a stub model repository), then the real consensus and snapshot code that
decides what training reads. Sockpuppet client ids, spoofed X-Forwarded-For and credentials
farmed from one peer or on one day make 0 poisoned training labels, with the default settings
and with consensus switched on."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from civicsense.cli.app import app as cli
from civicsense.labeling.snapshots import confirmed_sources, list_snapshots
from civicsense.labeling.trust import TrustRule, consensus
from civicsense.monitoring.feedback_log import post_key, read_feedback
from civicsense.serving.credentials import HEADER
from civicsense.serving.server import install_app
from civicsense.settings import Settings

pytestmark = pytest.mark.integration  # real processes, seconds each: `make test`, not test-fast

MODEL, VERSION = "civicsense-sentiment", "7+run1"
ROUTE = f"/v1/models/{MODEL}/feedback"
POSTS = [f"post {i}: this pension reform is a disgrace and a betrayal" for i in range(300)]
WRONG = "positive"  # the label the attacker wants trained on these plainly negative posts
TRAINING_ROWS = 100_000  # a training set so large that the share cap never hides a label


class StubModels:
    class Model:
        class loaded:  # noqa: N801 - the attribute the feedback route reads
            version_tag, version = VERSION, "7"

    def get_model(self, name: str):
        return self.Model() if name == MODEL else None


def server(settings: Settings) -> FastAPI:
    app = FastAPI()
    install_app(app, StubModels(), None, settings)
    return app


def feedback_body(text: str, client_id: str) -> dict:
    return {"text": text, "label": WRONG, "model_version": VERSION,
            "predicted_label": "negative", "client_id": client_id}


def poisoned(settings: Settings) -> int:
    """Training labels on the attacked posts with the attacker's label, in what training reads
    (confirmed_sources: the consensus snapshot if switched on, and annotations)."""
    attacked = {post_key(text) for text in POSTS}
    rows = [pd.read_parquet(path) for path in confirmed_sources(settings, TRAINING_ROWS)]
    if not rows:
        return 0
    labels = pd.concat(rows)
    return int((labels["post_id"].isin(attacked) & (labels["label"] == WRONG)).sum())


def with_consensus(settings: Settings, **rule) -> Settings:
    return settings.model_copy(update={"feedback_consensus_training": True,
                                       "feedback_consensus_max_share": 1.0, **rule})


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """The server's settings (defaults, a fresh home), every attack replayed once on its app,
    and the answers by attack."""
    settings = Settings(home=tmp_path_factory.mktemp("attacked"))
    app = server(settings)
    statuses: dict[str, list[int]] = {}
    # 1. Sockpuppets: the same texts, a wrong label, client ids sockpuppet_0000..0002, from
    # one address, first without a credential, then each with a credential of its own.
    with TestClient(app, client=("203.0.113.66", 40000)) as attacker:
        statuses["no credential"] = [
            attacker.post(ROUTE, json=feedback_body(text, f"sockpuppet_{k:04d}")).status_code
            for text in POSTS for k in range(3)]
        tokens = [attacker.post("/v1/credentials").json()["credential"] for _ in range(3)]
        statuses["sockpuppets"] = [
            attacker.post(ROUTE, json=feedback_body(text, f"sockpuppet_{k:04d}"),
                          headers={HEADER: tokens[k]}).status_code
            for text in POSTS for k in range(3)]
    # 2. Spoofing: 2,000 posts from an address that is no trusted proxy, each claiming another
    # X-Forwarded-For, each asking for a fresh credential first and posting with the
    # credentials it has in turn.
    with TestClient(app, client=("198.51.100.66", 40000)) as spoofer:
        credentials, posts, mine = [], [], []
        for i in range(2000):
            spoofed = {"X-Forwarded-For": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"}
            issued = spoofer.post("/v1/credentials", headers=spoofed)
            credentials.append(issued.status_code)
            if issued.status_code == 200:
                mine.append(issued.json()["credential"])
            posts.append(spoofer.post(ROUTE, json=feedback_body(POSTS[i % 300], "sockpuppet_0000"),
                                      headers={**spoofed, HEADER: mine[i % len(mine)]}
                                      ).status_code)
        statuses["spoofed credentials"], statuses["spoofed"] = credentials, posts
    # 3. Credentials from three addresses, all agreeing, on one day.
    for peer in ("192.0.2.11", "192.0.2.12", "192.0.2.13"):
        with TestClient(app, client=(peer, 40000)) as farm:
            token = farm.post("/v1/credentials").json()["credential"]
            statuses[f"farm {peer}"] = [
                farm.post(ROUTE, json=feedback_body(text, "sockpuppet_0001"),
                          headers={HEADER: token}).status_code for text in POSTS]
    return settings, statuses


def test_the_attacks_are_refused_or_limited_at_the_routes(attacked):
    settings, statuses = attacked
    assert set(statuses["no credential"]) == {401}
    # One address gets an hour's worth of credentials (6), spoofed headers or not.
    assert statuses["spoofed credentials"].count(200) == settings.credential_rate_per_hour
    # One address posts at most its peer limit (60 a minute, plus what refills meanwhile), one
    # credential its own (a burst of 10).
    for name in ("sockpuppets", "spoofed", *(k for k in statuses if k.startswith("farm"))):
        accepted = statuses[name].count(200)
        assert 0 < accepted <= 60 + 10, (name, accepted)
        assert set(statuses[name]) <= {200, 429}, name
    frame = read_feedback(settings.feedback_log, settings)
    assert len(frame) == sum(answers.count(200) for name, answers in statuses.items()
                             if name != "spoofed credentials")
    assert not frame["client_id"].str.startswith("sockpuppet").any()
    # Every record from the spoofer is tagged with its one TCP peer, whatever it claimed.
    assert frame["client_id"].str.split("_").str[1].nunique() == 5  # 5 peers in all


def test_0_poisoned_training_labels_with_the_default_settings(attacked):
    settings, _ = attacked
    assert poisoned(settings) == 0
    assert list_snapshots(settings) == []
    status = CliRunner().invoke(cli, ["label", "status", "--home", str(settings.home)])
    assert status.exit_code == 0, status.output
    assert "consensus (>= 3 credentials from >= 3 peers over >= 2 days): 0;" in status.output


def test_0_poisoned_training_labels_with_consensus_switched_on(attacked):
    settings, _ = attacked
    assert poisoned(with_consensus(settings)) == 0
    # Looser peers alone do not help the attacker either: the farm's agreement is of one day.
    assert poisoned(with_consensus(settings, feedback_min_peers=1)) == 0
    # The control: were one day enough, the three addresses' farm would poison the posts
    # each of them got through (so the 0s above are the trust rule's doing, not the replay's).
    farmed = consensus(read_feedback(settings.feedback_log, settings), TrustRule(3, 3, 1))
    assert len(farmed) > 0 and set(farmed["label"]) == {WRONG}
    assert poisoned(with_consensus(settings, feedback_min_days=1)) == len(farmed)
