"""Shared for the deploy tests: the CRD cache and each overlay rendered once."""

from __future__ import annotations

from pathlib import Path

import pytest

from civicsense.deploy.check import CHECK_TOKEN
from civicsense.deploy.render import overlay_names, render


@pytest.fixture(scope="session")
def crd_cache(tmp_path_factory) -> Path:
    """Only used if ../shared/k8s lacks the CRDs (then they are downloaded, sha256-checked)."""
    return tmp_path_factory.mktemp("crds")


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return {name: render(name, sink_token=CHECK_TOKEN) for name in overlay_names()}


@pytest.fixture
def find():
    """find(objects, kind, name): the one object of that kind and name (a deep copy)."""
    import copy

    def one(objects: list[dict], kind: str, name: str) -> dict:
        found, = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
        return copy.deepcopy(found)
    return one
