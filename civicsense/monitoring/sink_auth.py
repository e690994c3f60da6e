"""Who may write to the sink. The token (`CIVICSENSE_SINK_TOKEN`, the `civicsense-sink-token`
Secret on the cluster) travels only as `Authorization: Bearer …`, never in a URL: a `?token=`
query is refused. KServe's logger (v0.20.0, pkg/logger/worker.go) sends no headers of its own
beyond the CloudEvent's, so on the cluster an event may come without the token when it carries
the CloudEvent attributes of an allowed InferenceService (`CIVICSENSE_SINK_LOGGER_SOURCES`:
`namespace/name,…`); the NetworkPolicy in manifests/base/monitoring/log-sink.yaml lets only that
InferenceService's pods reach the sink, so nothing else can present them. `/feedback` always
needs the token.
"""

from __future__ import annotations

import hmac

# What manifests/base/monitoring/sink-token.yaml ships; rendering replaces it with a real token.
TOKEN_PLACEHOLDER = "REPLACE_WITH_SINK_TOKEN"
LOGGER_SOURCES_ENV = "CIVICSENSE_SINK_LOGGER_SOURCES"  # Settings.sink_logger_sources
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class SinkConfigError(SystemExit):
    """A token the sink (or the feedback forward) must not start with: exits non-zero with one
    line on stderr, wherever it is raised."""

    def __init__(self, message: str):
        super().__init__(f"civicsense: {message}")


def token_problem(token: str | None, host: str | None = None) -> str | None:
    """Why `token` must not be used (None: it may). The placeholder never may; an empty one
    only on a loopback `host` (unknown host: not loopback)."""
    if token is None:
        return None
    if token.strip() == TOKEN_PLACEHOLDER:
        return (f"CIVICSENSE_SINK_TOKEN is the placeholder {TOKEN_PLACEHOLDER} shipped in "
                "manifests/ (render with `civicsense deploy render --sink-token-file F`)")
    if not token.strip() and host not in LOOPBACK:
        return "CIVICSENSE_SINK_TOKEN is empty (set a real one, e.g. `openssl rand -hex 32`)"
    return None


def check_token(token: str | None, host: str | None = None) -> None:
    """Raise SinkConfigError if `token` must not be used."""
    problem = token_problem(token, host)
    if problem:
        raise SinkConfigError(problem)


def logger_sources(value: str) -> frozenset[tuple[str, str]]:
    """(namespace, InferenceService) pairs whose logger events need no token, from
    `Settings.sink_logger_sources` (`namespace/name,…`)."""
    pairs = set()
    for item in value.split(","):
        namespace, _, name = item.strip().partition("/")
        if namespace and name:
            pairs.add((namespace, name))
    return frozenset(pairs)


def token_in_url(request) -> bool:
    return "token" in request.query_params


def bearer_ok(request, token: str | None) -> bool:
    """True without a configured token; else `Authorization: Bearer <token>` (constant time)."""
    if token is None:
        return True
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(),
                                                              token.encode())


def from_allowed_logger(headers, sources: frozenset[tuple[str, str]]) -> bool:
    """A binary-mode CloudEvent as KServe's logger sends it, from an allowed InferenceService:
    `ce-specversion` 1.0, a `ce-source`, and (`ce-namespace`, `ce-inferenceservicename`) in
    `sources`. Structured events (no ce-* headers) never qualify."""
    if headers.get("ce-specversion") != "1.0" or not headers.get("ce-source"):
        return False
    return (headers.get("ce-namespace", ""), headers.get("ce-inferenceservicename", "")) in sources
