#!/usr/bin/env python3
"""Build the CivicSense browser extension (standard library only).

`build_extension()` copies the extension's runtime files into extension/dist/ (a folder
Chromium loads unpacked) and packs the same files into build/civicsense-extension.zip for the
stores. It checks the manifest first: every file it names exists, no remote code, and the
permissions are the least-privilege set the README documents.

    python extension/build.py [--dist DIR] [--zip FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent
ROOT = SOURCE.parent
DIST = SOURCE / "dist"
ZIP = ROOT / "build" / "civicsense-extension.zip"

# What ships: the manifest, the pages, the scripts, the styles and the icons. Not this
# script, the README, the icon generator or the dist folder itself.
SHIPPED = ("manifest.json", "*.html", "*.js", "*.css", "lib/*.js", "icons/*.png")
EXCLUDED = {"build.py"}
PERMISSIONS = {"storage", "activeTab", "scripting", "contextMenus"}
# Zip entries get a fixed timestamp so that the same sources give the same zip.
ZIP_DATE = (2026, 1, 1, 0, 0, 0)
REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']\s*(?:https?:)?//"""
                    r"""|import\s*\(?\s*["']https?:""", re.I)


class BuildError(RuntimeError):
    """The extension's sources are not shippable."""


def shipped_files(source: Path = SOURCE) -> list[Path]:
    files = {p for pattern in SHIPPED for p in source.glob(pattern) if p.is_file()}
    return sorted((p for p in files if p.name not in EXCLUDED), key=lambda p: p.as_posix())


def check_manifest(source: Path = SOURCE) -> dict:
    manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("manifest_version") != 3:
        raise BuildError("manifest_version must be 3")
    extra = set(manifest.get("permissions", [])) - PERMISSIONS
    if extra:
        raise BuildError(f"permissions beyond the least-privilege set: {sorted(extra)}")
    named = [manifest["background"]["service_worker"], manifest["action"]["default_popup"],
             manifest["options_ui"]["page"], *manifest["icons"].values(),
             *manifest["action"]["default_icon"].values()]
    missing = [name for name in named if not (source / name).is_file()]
    if missing:
        raise BuildError(f"the manifest names missing files: {missing}")
    for path in shipped_files(source):
        if path.suffix in {".html", ".js"} and REMOTE.search(path.read_text(encoding="utf-8")):
            raise BuildError(f"{path.relative_to(source)} loads remote code")
    return manifest


def build_extension(source: Path = SOURCE, dist: Path = DIST, zip_path: Path = ZIP) -> dict:
    """Write the unpacked extension to `dist` and the store zip to `zip_path`."""
    manifest = check_manifest(source)
    files = shipped_files(source)
    if dist.exists():
        shutil.rmtree(dist)
    for path in files:
        target = dist / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(source).as_posix(), ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return {"version": manifest["version"], "dist": dist, "zip": zip_path,
            "files": [p.relative_to(source).as_posix() for p in files]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=DIST, help="unpacked output folder")
    parser.add_argument("--zip", type=Path, default=ZIP, help="store zip")
    args = parser.parse_args(argv)
    try:
        built = build_extension(dist=args.dist.resolve(), zip_path=args.zip.resolve())
    except BuildError as error:
        print(f"extension build failed: {error}", file=sys.stderr)
        return 1
    print(f"CivicSense extension {built['version']}: {len(built['files'])} files")
    print(f"  load unpacked: {built['dist']}")
    print(f"  store zip:     {built['zip']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
