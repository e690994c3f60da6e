"""Helpers of the container suite: HTTP calls, manifest lookups by kind, waiting for a port."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import yaml

from civicsense.monitoring.sink import REQUEST_TYPE, RESPONSE_TYPE
from civicsense.settings import PROJECT_ROOT


def post_json(url: str, body: dict, headers: dict | None = None) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def post_event(sink_url: str, event_id: str, kind: str, body: dict, token: str) -> dict:
    """One KServe logger CloudEvent (binary mode), as the logger agent posts it to its
    `logger.url`, with the sink's token as `Authorization: Bearer` (never in the URL)."""
    headers = {"ce-specversion": "1.0", "ce-source": "http://localhost:9081/",
               "ce-inferenceservicename": "civicsense-sentiment", "ce-id": event_id,
               "ce-type": REQUEST_TYPE if kind == "request" else RESPONSE_TYPE,
               "Authorization": f"Bearer {token}"}
    return post_json(f"{sink_url}/events", body, headers)


def manifest_container(kind: str, name: str) -> dict:
    """The first container of the object found by kind and name anywhere under manifests/."""
    for path in sorted((PROJECT_ROOT / "manifests").rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == kind and \
                    doc.get("metadata", {}).get("name") == name:
                spec = doc["spec"]
                spec = spec.get("jobTemplate", {}).get("spec", spec)
                return spec["template"]["spec"]["containers"][0]
    raise AssertionError(f"no {kind} {name} under manifests/")


def wait_http(url: str, container, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            container.reload()
            assert container.status not in {"exited", "dead"}, container.logs().decode()
            time.sleep(0.5)
    raise AssertionError(f"{url} never answered:\n{container.logs().decode()[-2000:]}")
