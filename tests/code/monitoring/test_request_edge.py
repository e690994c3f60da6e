"""What the server and the sink check where a request comes in, as plain functions: the client
address behind trusted proxies only, strict JSON (BOM, keys twice), blank texts; and the
trusted-proxies setting as the environment gives it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from starlette.datastructures import Headers

from civicsense.monitoring.request_edge import (
    client_address,
    duplicate_key,
    forwarded_chain,
    is_blank,
    proxy_options,
    strip_bom,
)
from civicsense.settings import Settings

PROXY = ("10.0.0.0/8", "127.0.0.1/32", "::1/128")


def headers(**values: str) -> Headers:
    return Headers({name.replace("_", "-"): value for name, value in values.items()})


@pytest.mark.parametrize(("peer", "given", "trusted", "expected"), [
    # No trusted proxy (the default): every forwarded header is the client's own word.
    ("127.0.0.1", {"x_forwarded_for": "203.0.113.5"}, (), "127.0.0.1"),
    ("198.51.100.1", {"forwarded": "for=203.0.113.5", "x_real_ip": "1.2.3.4"}, (),
     "198.51.100.1"),
    # A peer that is not a trusted proxy: the same, whatever is trusted.
    ("198.51.100.1", {"x_forwarded_for": "203.0.113.5"}, PROXY, "198.51.100.1"),
    # From a trusted proxy: the right-most address that is not a trusted proxy.
    ("127.0.0.1", {"x_forwarded_for": "6.6.6.6, 203.0.113.5"}, PROXY, "203.0.113.5"),
    ("127.0.0.1", {"x_forwarded_for": "6.6.6.6, 203.0.113.5, 10.1.2.3"}, PROXY, "203.0.113.5"),
    ("127.0.0.1", {"x_forwarded_for": "10.1.1.1, 10.2.2.2"}, PROXY, "10.1.1.1"),
    ("127.0.0.1", {"x_forwarded_for": "203.0.113.5:4711"}, PROXY, "203.0.113.5"),
    ("::1", {"x_forwarded_for": "[2001:db8::17]:4711"}, PROXY, "2001:db8::17"),
    ("127.0.0.1", {"forwarded": 'for=6.6.6.6, for="[2001:db8::1]:80";proto=https'}, PROXY,
     "2001:db8::1"),
    ("127.0.0.1", {"x_real_ip": "203.0.113.9"}, PROXY, "203.0.113.9"),
    ("127.0.0.1", {}, PROXY, "127.0.0.1"),
    (None, {"x_forwarded_for": "203.0.113.5"}, PROXY, "unknown"),
])
def test_forwarded_headers_count_only_from_a_trusted_proxy(peer, given, trusted, expected):
    assert client_address(peer, headers(**given), trusted) == expected


def test_repeated_forwarded_for_headers_are_one_chain_and_win_over_the_others():
    raw = Headers(raw=[(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.5"),
                       (b"x-real-ip", b"1.1.1.1")])
    assert forwarded_chain(raw) == ["6.6.6.6", "203.0.113.5"]
    assert client_address("127.0.0.1", raw, PROXY) == "203.0.113.5"
    assert len(client_address("127.0.0.1", headers(x_forwarded_for="x" * 500), PROXY)) == 64


def test_uvicorn_reads_no_forwarded_header_unless_a_proxy_is_trusted():
    assert proxy_options(()) == {"proxy_headers": False, "forwarded_allow_ips": []}
    assert proxy_options(PROXY) == {"proxy_headers": True, "forwarded_allow_ips": list(PROXY)}


def test_the_setting_is_a_comma_separated_list_of_ips_and_networks(monkeypatch):
    assert Settings().trusted_proxies == ()
    monkeypatch.setenv("CIVICSENSE_TRUSTED_PROXIES", "127.0.0.1, ::1,10.0.0.0/8")
    assert Settings().trusted_proxies == ("127.0.0.1/32", "::1/128", "10.0.0.0/8")
    monkeypatch.setenv("CIVICSENSE_TRUSTED_PROXIES", "")
    assert Settings().trusted_proxies == ()
    monkeypatch.setenv("CIVICSENSE_TRUSTED_PROXIES", "127.0.0.1,localhost")
    with pytest.raises(ValidationError, match="'localhost' is not an IP address"):
        Settings()


def test_strict_json_finds_a_key_sent_twice_at_any_depth():
    assert duplicate_key(b'{"a": 1, "b": {"c": 1, "c": 2}}') == "c"
    assert duplicate_key(b'{"a": 1, "a": 1}') == "a"
    assert duplicate_key(b'[{"a": 1}, {"a": 2}]') is None  # one key in each of two objects
    assert duplicate_key(b"{not json") is None  # the route's own parser reports it
    assert duplicate_key(b"[" * 100_000) is None  # too deep for Python's json: not ours to say
    assert duplicate_key(b"\xff\xfe") is None
    assert strip_bom(b'\xef\xbb\xbf{"a": 1}') == b'{"a": 1}'
    assert strip_bom(b'{"a": 1}') == b'{"a": 1}'


@pytest.mark.parametrize(("text", "blank"), [
    ("", True), (" \n\t", True), ("\u200b\u202e", True), ("\ufeff", True),
    ("\u2066\u2069\u200d\u00ad", True), ("\u3164\u2800\ufe0f", True), ("\U000e0041", True),
    ("a\u200b", False), ("\U0001F600", False), ("\u0301", False), ("é", False),
])
def test_a_text_of_invisible_characters_only_is_blank(text, blank):
    assert is_blank(text) is blank
