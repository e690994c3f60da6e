"""Data sources for real: a local folder, an https-style URL on a local HTTP server, and gs://
on the GCS emulator (gcp-storage-emulator), each ingested end to end."""

import functools
import http.server
import shutil
import threading

import pytest

from civicsense.data.ingest import ingest
from civicsense.data.sources import SourceError, fetch, fingerprint
from civicsense.settings import Settings
from tests_support import FIXTURES, write_tweeteval_sample


@pytest.fixture
def served(tmp_path):
    """Our fixture files plus a TweetEval-layout folder, as one directory to serve."""
    root = tmp_path / "served"
    shutil.copytree(FIXTURES, root)
    write_tweeteval_sample(root / "tweeteval_sentiment")
    return root


@pytest.fixture
def http_base(served):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


@pytest.fixture
def gcs(monkeypatch, served):
    from gcp_storage_emulator.server import create_server
    from google.cloud import storage

    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket="civicsense-data")
    server.start()
    host = f"http://127.0.0.1:{server._api._httpd.server_port}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)
    settings = Settings()
    from google.auth.credentials import AnonymousCredentials

    client = storage.Client(project="civicsense", credentials=AnonymousCredentials())
    bucket = client.bucket("civicsense-data")
    for path in (served / "tweeteval_sentiment").iterdir():
        bucket.blob(f"sentiment/{path.name}").upload_from_filename(str(path))
    yield settings, bucket
    server.stop()


def test_local_path_is_used_in_place(tmp_path):
    assert fetch(str(FIXTURES / "posts.csv"), tmp_path, Settings()) == FIXTURES / "posts.csv"
    with pytest.raises(SourceError, match="not found"):
        fetch(str(tmp_path / "absent"), tmp_path, Settings())


def test_unsupported_scheme_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="unsupported data source scheme 'ftp'"):
        fetch("ftp://example.org/data.txt", tmp_path, Settings())


def test_http_file_and_tweeteval_folder(http_base, tmp_path):
    single = fetch(http_base + "semeval_mess.txt", tmp_path / "one", Settings())
    assert ingest(single, progress=False).records_read == 14
    folder = fetch(http_base + "tweeteval_sentiment/", tmp_path / "folder", Settings())
    assert len(ingest(folder, progress=False).accepted) == 3
    with pytest.raises(SourceError, match="HTTP 404"):
        fetch(http_base + "absent.csv", tmp_path / "absent", Settings())


def test_http_fingerprint_follows_the_content(http_base):
    assert fingerprint(http_base + "posts.csv", Settings()) == fingerprint(
        http_base + "posts.csv", Settings())
    assert fingerprint(http_base + "posts.csv", Settings()) != fingerprint(
        http_base + "semeval_mess.txt", Settings())


def test_gcs_prefix_on_the_emulator(gcs, tmp_path):
    settings, bucket = gcs
    local = fetch("gs://civicsense-data/sentiment", tmp_path / "download", settings)
    result = ingest(local, progress=False)
    assert list(result.accepted["label"]) == ["negative", "neutral", "positive"]
    before = fingerprint("gs://civicsense-data/sentiment", settings)
    bucket.blob("sentiment/train_labels.txt").upload_from_string("2\n1\n0\n")
    assert fingerprint("gs://civicsense-data/sentiment", settings) != before
    with pytest.raises(SourceError, match="no objects"):
        fetch("gs://civicsense-data/absent", tmp_path / "x", settings)


def test_local_fingerprint_changes_when_a_file_changes(tmp_path):
    (tmp_path / "a.csv").write_text("text,label\nhi,positive\n")
    before = fingerprint(str(tmp_path), Settings())
    (tmp_path / "a.csv").write_text("text,label\nhi,negative\nyo,neutral\n")
    assert fingerprint(str(tmp_path), Settings()) != before


def test_an_unreachable_gcs_source_is_a_source_error(gcs):
    with pytest.raises(SourceError, match="cannot read gs://no-such-bucket/raw/: NotFound"):
        fetch("gs://no-such-bucket/raw/", FIXTURES / "unused", Settings())
