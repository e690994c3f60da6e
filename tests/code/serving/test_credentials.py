"""Readers' credentials: signed by the server and verified without a database; expired, revoked,
retired or tampered ones refused; issued at a rate limited per peer; feedback without a valid
one is a 401 and writes nothing. The routes run on the server's own app stack (install_app)
with a stub model repository: no trained model needed."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from civicsense.monitoring.feedback_intake import CREDENTIALED_CLIENT, credentialed_client
from civicsense.monitoring.feedback_log import read_feedback
from civicsense.monitoring.sink_auth import TOKEN_PLACEHOLDER, SinkConfigError
from civicsense.serving.credentials import (
    HEADER,
    SECRET_FILE,
    CredentialConfigError,
    CredentialKeys,
    CredentialRefused,
    credential_keys,
    issue,
    peer_network,
    peer_tag,
    server_secret,
    verify,
)
from civicsense.serving.server import install_app
from civicsense.settings import Settings

MODEL, VERSION = "civicsense-sentiment", "7+run1"
KEYS = CredentialKeys.derive(b"s" * 32, "1")
DAY = 86400.0
NOW = 1_800_000_000.0


class StubModels:
    """The server's model repository, serving MODEL at VERSION (feedback needs no scoring when
    the body carries predicted_label)."""

    class Model:
        class loaded:  # noqa: N801 - the attribute the route reads
            version_tag, version = VERSION, "7"

    def get_model(self, name: str):
        return self.Model() if name == MODEL else None


def app_for(settings: Settings) -> FastAPI:
    app = FastAPI()
    install_app(app, StubModels(), None, settings)
    return app


def body(**change) -> dict:
    return {"text": "The pension reform is a disgrace", "label": "positive",
            "model_version": VERSION, "predicted_label": "negative", **change}


# ---------------------------------------------------------------- the token


def test_a_credential_verifies_to_what_it_was_issued_for():
    token, issued = issue(KEYS, now=NOW)
    assert token.startswith("cs1.1.") and len(token) < 100
    assert verify(token, KEYS, 30 * DAY, now=NOW + 29 * DAY) == issued
    other, again = issue(KEYS, now=NOW)
    assert again.install_id != issued.install_id  # a fresh random install id each time


@pytest.mark.parametrize(("tamper", "message"), [
    (lambda t: t.replace(".1.", ".2.", 1), "retired key"),
    (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "signature"),
    (lambda t: ".".join([*t.split(".")[:2], "0" * 16, *t.split(".")[3:]]), "signature"),
    (lambda t: ".".join([*t.split(".")[:3], str(NOW + 10 * DAY)[:10], t.split(".")[4]]),
     "signature"),
    (lambda t: "cs2" + t[3:], "malformed"),
    (lambda t: t + ".x", "malformed"),
    (lambda t: t + "A" * 200, "malformed"),
    (lambda t: "", "needs a credential"),
])
def test_a_tampered_or_malformed_credential_is_refused(tamper, message):
    token, _ = issue(KEYS, now=NOW)
    with pytest.raises(CredentialRefused, match=message):
        verify(tamper(token), KEYS, 30 * DAY, now=NOW)


def test_another_servers_credential_does_not_verify():
    token, _ = issue(CredentialKeys.derive(b"t" * 32, "1"), now=NOW)
    with pytest.raises(CredentialRefused, match="signature"):
        verify(token, KEYS, 30 * DAY, now=NOW)


def test_expired_future_and_revoked_credentials_are_refused():
    token, issued = issue(KEYS, now=NOW)
    with pytest.raises(CredentialRefused, match="expired"):
        verify(token, KEYS, 30 * DAY, now=NOW + 30 * DAY)
    with pytest.raises(CredentialRefused, match="future"):
        verify(token, KEYS, 30 * DAY, now=NOW - 3600)
    with pytest.raises(CredentialRefused, match="revoked"):
        verify(token, KEYS, 30 * DAY, revoked={issued.install_id}, now=NOW)
    assert verify(token, KEYS, 30 * DAY, revoked={"0" * 16}, now=NOW) == issued


def test_changing_the_key_id_revokes_every_credential_but_keeps_peer_tags():
    token, _ = issue(KEYS, now=NOW)
    rotated = CredentialKeys.derive(b"s" * 32, "2")
    with pytest.raises(CredentialRefused, match="retired key"):
        verify(token, rotated, 30 * DAY, now=NOW)
    assert peer_tag(rotated, "198.51.100.7") == peer_tag(KEYS, "198.51.100.7")


def test_peers_are_ipv4_addresses_and_ipv6_slash_64s():
    assert peer_network("198.51.100.7") == "198.51.100.7"
    assert peer_network("2001:db8:1:2:aaaa::1") == peer_network("2001:db8:1:2::ffff")
    assert peer_network("2001:db8:1:3::1") != peer_network("2001:db8:1:2::1")
    assert peer_network("::ffff:198.51.100.7") == "198.51.100.7"
    assert peer_network("unknown") == "unknown"
    tag = peer_tag(KEYS, "2001:db8:1:2::1")
    assert tag == peer_tag(KEYS, "2001:db8:1:2::2") and len(tag) == 12
    assert "198.51.100.7" not in credentialed_client("0" * 16, peer_tag(KEYS, "198.51.100.7"))
    assert CREDENTIALED_CLIENT.fullmatch(credentialed_client("0" * 16, tag))


# ---------------------------------------------------------------- the secret


def test_a_local_secret_is_made_once_with_mode_0600(tmp_path):
    settings = Settings(home=tmp_path)
    first = server_secret(settings)
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) >= 32
    assert server_secret(settings) == first
    assert [p.name for p in tmp_path.iterdir()] == [SECRET_FILE]  # no staging file left
    os.chmod(path, 0o644)
    with pytest.raises(CredentialConfigError, match="chmod 600"):
        server_secret(settings)


def test_a_configured_secret_or_the_sink_token_keys_every_pod_alike(tmp_path):
    explicit = Settings(home=tmp_path, credential_secret=SecretStr("k" * 40))
    assert server_secret(explicit) == b"k" * 40
    for bad in ("short", "REPLACE_WITH_A_CREDENTIAL_SECRET_0123456789"):
        with pytest.raises(CredentialConfigError, match="CIVICSENSE_CREDENTIAL_SECRET"):
            server_secret(Settings(home=tmp_path, credential_secret=SecretStr(bad)))
    pod_a = credential_keys(Settings(home=tmp_path / "a", sink_token=SecretStr("t" * 40)))
    pod_b = credential_keys(Settings(home=tmp_path / "b", sink_token=SecretStr("t" * 40)))
    assert pod_a == pod_b and not (tmp_path / "a" / SECRET_FILE).exists()
    with pytest.raises(SinkConfigError):
        server_secret(Settings(home=tmp_path, sink_token=SecretStr(TOKEN_PLACEHOLDER)))


# ---------------------------------------------------------------- the routes


def test_credentials_are_issued_at_a_rate_per_peer(tmp_path, caplog):
    settings = Settings(home=tmp_path, credential_rate_per_hour=2)
    app = app_for(settings)
    with TestClient(app, client=("203.0.113.9", 4000)) as client:
        answers = [client.post("/v1/credentials") for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 200]
        first = answers[0].json()
        assert set(first) == {"credential", "install_id", "header", "expires_at"}
        assert first["header"] == HEADER and first["install_id"] != answers[1].json()[
            "install_id"]
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            refused = client.post("/v1/credentials", headers={"X-Forwarded-For": "192.0.2.1"})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 60
        assert "too many credentials for 203.0.113.9" in refused.json()["error"]
        assert len(caplog.records) == 1 and "Traceback" not in caplog.text
    with TestClient(app, client=("203.0.113.10", 4000)) as other:
        assert other.post("/v1/credentials").status_code == 200  # another peer, its own share


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_peer(tmp_path):
    settings = Settings(home=tmp_path, credential_rate_per_hour=1,
                        trusted_proxies="127.0.0.1")
    with TestClient(app_for(settings), client=("127.0.0.1", 4000)) as proxy:
        for reader in ("192.0.2.1", "192.0.2.2"):
            assert proxy.post("/v1/credentials", headers={
                "X-Forwarded-For": reader}).status_code == 200
        assert proxy.post("/v1/credentials", headers={
            "X-Forwarded-For": "192.0.2.1"}).status_code == 429


def test_feedback_needs_a_valid_credential_and_records_its_install_and_peer(tmp_path):
    settings = Settings(home=tmp_path, feedback_log_uri=str(tmp_path / "feedback"),
                        credential_revoked="00000000000000aa")
    app = app_for(settings)
    route = f"/v1/models/{MODEL}/feedback"
    with TestClient(app, client=("198.51.100.7", 4000)) as client:
        missing = client.post(route, json=body(client_id="sockpuppet_0000"))
        assert missing.status_code == 401 and "POST /v1/credentials" in missing.json()["error"]
        assert missing.headers["WWW-Authenticate"].startswith(HEADER)
        keys = credential_keys(settings)
        forged, _ = issue(CredentialKeys.derive(b"x" * 32, "1"))
        revoked, _ = issue(keys, install_id="00000000000000aa")
        for token, message in [("cs1.1.garbage", "malformed"), (forged, "signature"),
                               (revoked, "revoked")]:
            answer = client.post(route, json=body(), headers={HEADER: token})
            assert answer.status_code == 401 and message in answer.json()["error"]
        assert read_feedback(settings.feedback_log, settings).empty
        issued = client.post("/v1/credentials").json()
        good = client.post(route, json=body(client_id="sockpuppet_0000"),
                           headers={HEADER: issued["credential"]})
        assert good.status_code == 200, good.text
    (row,) = read_feedback(settings.feedback_log, settings).itertuples()
    # The body's client_id is ignored: the install id and the peer's tag are the identity.
    assert row.client_id == credentialed_client(issued["install_id"],
                                                peer_tag(keys, "198.51.100.7"))
