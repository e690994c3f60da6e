"""The extension's build, manifest and source rules: no browser needed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from ext_support import ROOT, build

SOURCE = ROOT / "extension"
SCRIPTS = sorted(p for p in SOURCE.rglob("*.js") if "dist" not in p.parts)


def test_build_writes_an_unpacked_folder_and_a_reproducible_zip(tmp_path: Path):
    first = build.build_extension(dist=tmp_path / "dist", zip_path=tmp_path / "a.zip")
    build.build_extension(dist=tmp_path / "dist", zip_path=tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    names = zipfile.ZipFile(tmp_path / "a.zip").namelist()
    assert names == first["files"]
    assert {"manifest.json", "background.js", "content.js", "popup.html", "options.html",
            "lib/api.js", "icons/icon128.png"} <= set(names)
    assert not {"build.py", "README.md"} & set(names)
    for name in names:
        assert (tmp_path / "dist" / name).read_bytes() == (SOURCE / name).read_bytes()


def test_build_refuses_extra_permissions(tmp_path: Path):
    source = tmp_path / "src"
    shutil.copytree(SOURCE, source, ignore=shutil.ignore_patterns("dist"))
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["permissions"].append("tabs")
    (source / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(build.BuildError, match="tabs"):
        build.build_extension(source, tmp_path / "dist", tmp_path / "x.zip")


def test_manifest_is_least_privilege():
    manifest = json.loads((SOURCE / "manifest.json").read_text())
    assert manifest["manifest_version"] == 3
    assert sorted(manifest["permissions"]) == ["activeTab", "contextMenus", "scripting",
                                               "storage"]
    # Loopback only (the default local endpoint); any other endpoint is asked for at runtime.
    assert manifest["host_permissions"] == ["http://127.0.0.1/*", "http://localhost/*"]
    assert manifest["optional_host_permissions"] == ["https://*/*", "http://*/*"]
    # Nothing runs in pages until the user asks: no declared content scripts, nothing exposed.
    assert "content_scripts" not in manifest
    assert "web_accessible_resources" not in manifest
    assert "externally_connectable" not in manifest
    assert manifest["content_security_policy"]["extension_pages"].startswith("script-src 'self'")
    assert manifest["background"] == {"service_worker": "background.js", "type": "module"}


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.relative_to(SOURCE).as_posix())
def test_no_html_sinks_no_eval(path: Path):
    """Page and server text is inserted with textContent only; no code from strings."""
    code = path.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "createContextualFragment", "DOMParser"):
        assert sink not in code, f"{path.name} uses {sink}"


def test_only_the_service_worker_talks_to_the_network():
    for path in SCRIPTS:
        code = path.read_text()
        uses_network = re.search(r"\bfetch\s*\(|XMLHttpRequest|WebSocket|sendBeacon", code)
        allowed = path.relative_to(SOURCE).as_posix() in {"lib/api.js", "background.js"}
        assert not uses_network or allowed, f"{path.name} makes network calls"
    html = " ".join(p.read_text() for p in SOURCE.glob("*.html"))
    assert not re.search(r"""(src|href)=["']https?:""", html), "no remote scripts or styles"


def test_badges_and_panels_live_in_shadow_roots():
    content = (SOURCE / "content.js").read_text()
    assert "attachShadow" in content and "adoptedStyleSheets" in content


def test_node_unit_tests():
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed (the browser tests cover the same code)")
    result = subprocess.run([node, "--test", str(Path(__file__).parent / "unit")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
