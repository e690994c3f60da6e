"""Readers' credentials: a per-install token the server signs (HMAC-SHA256) and verifies without
a database, the keys behind it, and `POST /v1/credentials`, which issues one at a rate limited
per peer address. The feedback route (civicsense.serving.feedback) takes feedback only with one.

A credential reads `cs1.<key id>.<install id>.<issued at>.<signature>`: the install id is 16
random hex digits the server chose, the issue time whole Unix seconds, the signature the
unpadded base64url HMAC-SHA256 of everything before it under the key of that key id. It is
refused once `Settings.credential_ttl_days` old, when its install id is in
`Settings.credential_revoked`, or when `Settings.credential_key_id` has changed since it was
issued (one setting revokes every credential; the extension then asks for a new one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse

from civicsense.monitoring.feedback_intake import RateLimiter
from civicsense.monitoring.request_edge import client_address
from civicsense.monitoring.sink_auth import check_token
from civicsense.serving.http import log_client_error
from civicsense.settings import Settings

VERSION = "cs1"
HEADER = "X-CivicSense-Credential"
ROUTE = "/v1/credentials"
INSTALL_ID = re.compile(r"[0-9a-f]{16}")
SECRET_FILE = "credential-secret"
MIN_SECRET_CHARS = 32
MAX_CREDENTIAL_CHARS = 200  # a real one is about 80: nothing longer is parsed
CLOCK_SKEW_SECONDS = 300  # pods' clocks differ: an issue time this far ahead still verifies


class CredentialRefused(ValueError):
    """A credential that does not verify; the message tells the client why."""


class PeerOverLimit(ValueError):
    """A peer asked for more credentials than its rate; `retry_after` in whole seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class CredentialConfigError(SystemExit):
    """A signing secret the server must not start with: exits non-zero with one line."""

    def __init__(self, message: str):
        super().__init__(f"civicsense: {message}")


@dataclass(frozen=True)
class Credential:
    """What a verified credential says: whose install, issued when, under which key id."""

    install_id: str
    issued_at: int
    key_id: str


@dataclass(frozen=True)
class CredentialKeys:
    """The keys derived from the server's secret: `signing` for credentials under `key_id`,
    `peers` for peer tags. The peer key ignores the key id, so a peer keeps its tag when the
    key id changes and the trust rule still sees one peer."""

    key_id: str
    signing: bytes
    peers: bytes

    @classmethod
    def derive(cls, secret: bytes, key_id: str) -> CredentialKeys:
        def key(label: str) -> bytes:
            return hmac.new(secret, label.encode(), hashlib.sha256).digest()

        return cls(key_id, key(f"civicsense credential signing key {key_id}"),
                   key("civicsense peer tag key"))


def _local_secret(path: Path) -> bytes:
    """The secret kept in `path` (mode 0600), made on first use. Made whole in a temporary file
    and linked into place, so two servers starting together read the same one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".credential-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(handle, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        os.link(staging, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(staging)
    if path.stat().st_mode & 0o077:
        raise CredentialConfigError(f"{path} is readable by others: chmod 600 it")
    value = path.read_text().strip()
    if len(value) < MIN_SECRET_CHARS:
        raise CredentialConfigError(f"{path} holds fewer than {MIN_SECRET_CHARS} characters")
    return value.encode()


def server_secret(settings: Settings) -> bytes:
    """The secret credentials are signed with: CIVICSENSE_CREDENTIAL_SECRET; else one derived
    from the sink token (on the cluster every predictor pod holds its Secret, so each verifies
    what another issued, and a holder of that token could write the feedback log directly
    anyway); else a random one kept under the home directory."""
    if settings.credential_secret is not None:
        value = settings.credential_secret.get_secret_value().strip()
        if value.startswith("REPLACE_WITH_") or len(value) < MIN_SECRET_CHARS:
            raise CredentialConfigError(
                f"CIVICSENSE_CREDENTIAL_SECRET must be a real secret of {MIN_SECRET_CHARS}+ "
                "characters (e.g. `openssl rand -hex 32`)")
        return value.encode()
    token = settings.sink_token.get_secret_value().strip() if settings.sink_token else ""
    if token:
        check_token(token)  # never the manifests' placeholder: everyone could sign with it
        return b"civicsense sink token:" + token.encode()
    return _local_secret(settings.home_dir / SECRET_FILE)


def credential_keys(settings: Settings) -> CredentialKeys:
    """The server's keys (reads or makes the local secret: call once, at start)."""
    return CredentialKeys.derive(server_secret(settings), settings.credential_key_id)


def _signature(keys: CredentialKeys, payload: str) -> str:
    digest = hmac.new(keys.signing, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue(keys: CredentialKeys, now: float | None = None,
          install_id: str | None = None) -> tuple[str, Credential]:
    """A new credential (for a fresh random install id unless one is given) and what it says."""
    install_id = install_id or secrets.token_hex(8)
    if not INSTALL_ID.fullmatch(install_id):
        raise ValueError(f"an install id is 16 hex digits, not {install_id!r}")
    issued = int(time.time() if now is None else now)
    payload = f"{VERSION}.{keys.key_id}.{install_id}.{issued}"
    return f"{payload}.{_signature(keys, payload)}", Credential(install_id, issued, keys.key_id)


def verify(token: str | None, keys: CredentialKeys, ttl_seconds: float,
           revoked: Collection[str] = (), now: float | None = None) -> Credential:
    """What `token` says if the server issued it, under the current key id, less than
    `ttl_seconds` ago, for an install id not `revoked`; else CredentialRefused saying why."""
    token = (token or "").strip()
    if not token:
        raise CredentialRefused(f"feedback needs a credential: get one from POST {ROUTE} and "
                                f"send it as {HEADER}")
    parts = token.split(".") if len(token) <= MAX_CREDENTIAL_CHARS else []
    if len(parts) != 5 or parts[0] != VERSION:
        raise CredentialRefused(f"the credential is malformed: get a new one from POST {ROUTE}")
    _, key_id, install_id, issued, signature = parts
    if key_id != keys.key_id:
        raise CredentialRefused(f"the credential was issued under a retired key: get a new one "
                                f"from POST {ROUTE}")
    expected = _signature(keys, token.rsplit(".", 1)[0])
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise CredentialRefused("the credential's signature does not verify")
    if not INSTALL_ID.fullmatch(install_id) or not issued.isdigit():
        raise CredentialRefused("the credential is malformed")  # signed, so never expected
    now = time.time() if now is None else now
    age = now - int(issued)
    if age < -CLOCK_SKEW_SECONDS:
        raise CredentialRefused("the credential is issued in the future")
    if age >= ttl_seconds:
        raise CredentialRefused(f"the credential has expired: get a new one from POST {ROUTE}")
    if install_id in revoked:
        raise CredentialRefused("the credential is revoked")
    return Credential(install_id, int(issued), key_id)


def peer_network(address: str) -> str:
    """What counts as one peer: an IPv4 address, an IPv6 /64 (what one subscriber usually
    holds, so an attacker cannot count as many peers as it has addresses), anything else as
    it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def peer_tag(keys: CredentialKeys, address: str) -> str:
    """12 hex digits standing for the peer (peer_network) in the feedback log: the trust rule
    tells peers apart without the log holding readers' addresses."""
    return hmac.new(keys.peers, peer_network(address).encode(), hashlib.sha256).hexdigest()[:12]


class CredentialIssuer:
    """Issues credentials, at most `credential_rate_per_hour` per peer network (burst: an
    hour's worth), and verifies them with the server's settings."""

    def __init__(self, settings: Settings, keys: CredentialKeys, clock=time.monotonic):
        rate = settings.credential_rate_per_hour
        self.keys, self.settings = keys, settings
        self.limiter = RateLimiter(rate / 60.0, max(1, math.ceil(rate)), clock=clock)

    def verify(self, token: str | None) -> Credential:
        return verify(token, self.keys, self.settings.credential_ttl_days * 86400.0,
                      self.settings.credential_revoked)

    def issue_for(self, peer: str) -> dict:
        """A new credential for `peer` as the route answers it; a PeerOverLimit when the
        peer's allowance is spent."""
        wait = self.limiter.take(peer_network(peer))
        if wait:
            raise PeerOverLimit(f"too many credentials for {peer}: try again in "
                                f"{math.ceil(wait)} s", max(1, math.ceil(wait)))
        token, credential = issue(self.keys)
        expires = credential.issued_at + self.settings.credential_ttl_days * 86400.0
        return {"credential": token, "install_id": credential.install_id, "header": HEADER,
                "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds")}


def install_credential_route(app, issuer: CredentialIssuer, settings: Settings) -> None:
    """Add `POST /v1/credentials` to the server's app: 200 with a new credential, or a 429
    `{"error"}` with Retry-After (one log line) when the peer has had its share."""

    async def credentials_route(request: Request):
        peer = client_address(request.client.host if request.client else None,
                              request.headers, settings.trusted_proxies)
        try:
            return issuer.issue_for(peer)
        except PeerOverLimit as error:
            log_client_error(429, request, str(error))
            return JSONResponse({"error": str(error)}, status_code=429,
                                headers={"Retry-After": str(error.retry_after)})

    app.add_api_route(ROUTE, credentials_route, methods=["POST"], name="civicsense_credentials")
