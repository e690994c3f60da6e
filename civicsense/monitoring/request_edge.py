"""What the model server and the sink both check where a request comes in: who sent it (the TCP
peer, or behind a trusted proxy the address that proxy forwarded), strict JSON bodies (a leading
UTF-8 BOM dropped, a key twice in one object refused) and texts that show nothing (blank).
Plain functions: no HTTP here."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
BOM = b"\xef\xbb\xbf"
# A forwarded entry that is no address ("unknown", "_hidden") still keys a limiter's bucket.
MAX_ADDRESS_CHARS = 64
# Characters that show nothing on their own: controls, format characters (zero-width spaces
# and joiners, bidi controls, the BOM, tags) and separators by category; a few letters, marks
# and symbols that render as blanks by name (Hangul fillers, Khmer inherent vowels, the
# combining grapheme joiner, the braille blank); and the variation selectors.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
INVISIBLE_CHARACTERS = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u2800"
                                 "\u3164\uffa0")
VARIATION_SELECTORS = ((0xFE00, 0xFE0F), (0xE0100, 0xE01EF))


# ---------------------------------------------------------------- who sent it


def proxy_options(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """uvicorn's settings for forwarded headers: honoured only from `trusted_proxies` (uvicorn
    on its own trusts X-Forwarded-For from 127.0.0.1, where any proxy on the host, Knative's
    queue-proxy among them, passes a client's spoofed header on); none: not read at all."""
    return {"proxy_headers": bool(trusted_proxies),
            "forwarded_allow_ips": list(trusted_proxies)}


@functools.lru_cache(maxsize=16)
def _networks(trusted_proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies)


def _trusted(host: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def host_of(entry: str) -> str:
    """The address in one forwarded entry: quotes, brackets and a port dropped, an IP address
    normalised; anything else kept as is (shortened)."""
    entry = entry.strip().strip('"').strip()
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has more colons
        entry = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return entry[:MAX_ADDRESS_CHARS]


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    getlist = getattr(headers, "getlist", None)  # Starlette's headers: every repeated one
    if getlist is not None:
        return list(getlist(name))
    return [headers[name]] if name in headers else []


def forwarded_chain(headers: Mapping[str, str]) -> list[str]:
    """The addresses a proxy forwarded, client first: X-Forwarded-For, else the `for=` of
    Forwarded (RFC 7239), else X-Real-IP; empty when none is set."""
    chain = [host_of(part) for value in _values(headers, "x-forwarded-for")
             for part in value.split(",") if part.strip()]
    if not chain:
        for value in _values(headers, "forwarded"):
            for element in value.split(","):
                for pair in element.split(";"):
                    key, _, found = pair.partition("=")
                    if key.strip().lower() == "for" and found.strip():
                        chain.append(host_of(found))
    if not chain:
        chain = [host_of(value) for value in _values(headers, "x-real-ip") if value.strip()]
    return chain


def client_address(peer: str | None, headers: Mapping[str, str],
                   trusted_proxies: Sequence[str]) -> str:
    """The address every limit keyed on the peer counts. The TCP `peer`, unless it is one of
    `trusted_proxies` (Settings.trusted_proxies): then the right-most forwarded address that is
    not a trusted proxy itself (each proxy appends what it saw; what a client wrote is further
    left), or the left-most when all are. A peer that is no trusted proxy is taken as it is,
    whatever its headers say."""
    host = host_of(peer) if peer else "unknown"
    networks = _networks(tuple(trusted_proxies))
    if not networks or not _trusted(host, networks):
        return host
    chain = forwarded_chain(headers)
    for entry in reversed(chain):
        if not _trusted(entry, networks):
            return entry
    return chain[0] if chain else host


# ---------------------------------------------------------------- strict JSON


def strip_bom(raw: bytes) -> bytes:
    """`raw` without a leading UTF-8 BOM: JSON (RFC 8259) allows a parser to ignore one, and
    orjson (V1, feedback) refuses it where Python's json (V2, through FastAPI) skips it."""
    return raw[len(BOM):] if raw.startswith(BOM) else raw


class _Duplicate(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen.add(key)
    # The parsed values are never used: nothing is built.


def duplicate_key(raw: bytes) -> str | None:
    """The first key that a JSON object in `raw` holds twice; None when there is none, or when
    `raw` is no JSON at all (the caller's own parser says what is wrong with it). Parsers keep
    the last of two silently: what was checked need not be what is used."""
    try:
        json.loads(raw, object_pairs_hook=_no_duplicates)
    except _Duplicate as duplicate:
        return duplicate.key
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        return None
    return None


def duplicate_key_message(key: str) -> str:
    return (f"the JSON body has the key {json.dumps(key)[:100]} twice in one object: send "
            "each key once")


# ---------------------------------------------------------------- blank texts


@functools.cache
def _visible() -> re.Pattern:
    """One character that shows something. Built on first use from this Python's Unicode
    tables (≈ 0.1 s): a text of 2,000 invisible characters is then one C-speed search, not
    2,000 lookups in the request's path."""
    codes = [c for c in range(sys.maxunicode + 1)
             if unicodedata.category(chr(c)) in INVISIBLE_CATEGORIES]
    codes += [ord(c) for c in INVISIBLE_CHARACTERS]
    codes += [c for low, high in VARIATION_SELECTORS for c in range(low, high + 1)]
    ranges: list[list[int]] = []
    for code in sorted(set(codes)):
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    members = "".join(f"{re.escape(chr(low))}-{re.escape(chr(high))}" for low, high in ranges)
    return re.compile(f"[^{members}]")


def is_blank(text: str) -> bool:
    """True when `text` shows nothing: empty, or only whitespace and invisible characters
    (zero-width spaces, bidi controls such as U+202E, the BOM, variation selectors …)."""
    return _visible().search(text) is None
