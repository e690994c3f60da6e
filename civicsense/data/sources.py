"""Data sources: resolve a local path, an https:// URL or a gs:// URI to local files, and give
each a cheap fingerprint so an unchanged source reuses the pipeline's cache."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import requests

from civicsense.data.readers import discover
from civicsense.settings import Settings
from civicsense.storage import gcs_client, split_gcs_uri

# A URL ending in "/" names a TweetEval-style folder; these are the files fetched from it.
TWEETEVAL_FILES = ("mapping.txt", "train_text.txt", "train_labels.txt", "val_text.txt",
                   "val_labels.txt")


class SourceError(ValueError):
    """The data source cannot be reached or holds nothing."""


@contextmanager
def gcs_errors(source: str) -> Iterator[None]:
    """Turn the GCS client's failures (no credentials, access denied, bucket unreachable) into
    one SourceError line naming the source."""
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    try:
        yield
    except (GoogleAuthError, GoogleAPIError, requests.RequestException, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise SourceError(f"cannot read {source}: {type(error).__name__}: {first_line} (GCS "
                          "needs credentials: GOOGLE_APPLICATION_CREDENTIALS, or "
                          "STORAGE_EMULATOR_HOST for the emulator)") from None


def _gcs_blobs(source: str, settings: Settings) -> list:
    bucket, prefix = split_gcs_uri(source)
    with gcs_errors(source):
        blobs = [b for b in gcs_client(settings).list_blobs(bucket, prefix=prefix)
                 if not b.name.endswith("/")]
    if not blobs:
        raise SourceError(f"no objects under {source}")
    return blobs


def check(source: str, settings: Settings) -> None:
    """Fail fast, before a pipeline starts, on a source that cannot be read."""
    scheme = urlparse(source).scheme
    if scheme == "gs":
        _gcs_blobs(source, settings)
    elif scheme in {"http", "https"}:
        url = source + TWEETEVAL_FILES[1] if source.endswith("/") else source
        try:
            status = requests.head(url, timeout=settings.http_timeout,
                                   allow_redirects=True).status_code
        except requests.RequestException as error:
            raise SourceError(f"cannot reach {url}: {error}") from error
        if status >= 400:
            raise SourceError(f"HEAD {url} answered HTTP {status}")
    else:
        discover(fetch(source, Path("."), settings))


def fingerprint(source: str, settings: Settings) -> str:
    """Changes when the source's content may have changed (size/mtime, ETag, GCS md5)."""
    digest = hashlib.sha256(source.encode())
    scheme = urlparse(source).scheme
    if scheme == "gs":
        for blob in sorted(_gcs_blobs(source, settings), key=lambda b: b.name):
            digest.update(f"{blob.name}:{blob.md5_hash}:{blob.generation}".encode())
    elif scheme in {"http", "https"}:
        urls = [source + name for name in TWEETEVAL_FILES] if source.endswith("/") else [source]
        for url in urls:
            try:
                head = requests.head(url, timeout=settings.http_timeout, allow_redirects=True)
                digest.update(f"{url}:{head.headers.get('ETag')}:"
                              f"{head.headers.get('Last-Modified')}:"
                              f"{head.headers.get('Content-Length')}".encode())
            except requests.RequestException:
                digest.update(f"{url}:unreachable".encode())
    else:
        path = Path(source)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.exists():
                stat = file.stat()
                digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}:"
                              f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _download(url: str, target: Path, settings: Settings, required: bool = True) -> bool:
    try:
        response = requests.get(url, timeout=settings.http_timeout, stream=True)
    except requests.RequestException as error:
        raise SourceError(f"cannot reach {url}: {error}") from error
    if response.status_code == 404 and not required:
        return False
    if response.status_code != 200:
        raise SourceError(f"GET {url} answered HTTP {response.status_code}")
    with target.open("wb") as handle:
        for chunk in response.iter_content(1 << 20):
            handle.write(chunk)
    return True


def fetch(source: str, workdir: Path, settings: Settings) -> Path:
    """A local file or directory holding the source's files (downloaded into workdir)."""
    parsed = urlparse(source)
    if parsed.scheme in {"http", "https"}:
        workdir.mkdir(parents=True, exist_ok=True)
        if source.endswith("/"):
            for name in TWEETEVAL_FILES:
                _download(source + name, workdir / name, settings,
                          required=name.startswith("train"))
            return workdir
        target = workdir / (Path(parsed.path).name or "data.txt")
        _download(source, target, settings)
        return target
    if parsed.scheme == "gs":
        prefix = split_gcs_uri(source)[1]
        for blob in _gcs_blobs(source, settings):
            relative = blob.name[len(prefix):].lstrip("/") or Path(blob.name).name
            target = workdir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with gcs_errors(source):
                blob.download_to_filename(str(target))
        return workdir
    if parsed.scheme not in {"", "file"}:
        raise SourceError(f"unsupported data source scheme {parsed.scheme!r} in {source}; "
                          "use a local path, https:// or gs://")
    path = Path(parsed.path if parsed.scheme == "file" else source).expanduser()
    if not path.exists():
        raise SourceError(f"data source not found: {path}")
    return path


def clear(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
