"""Helpers importable from any test module (pytest puts tests/ on sys.path)."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from civicsense.settings import MIRROR_DATA  # noqa: F401  (re-exported for tests)


def require_mirror_dir() -> Path:
    """The SemEval mirror, or skip with the reason."""
    if not MIRROR_DATA.is_dir():
        pytest.skip(f"data mirror absent: {MIRROR_DATA} (CI provides ../shared/data)")
    return MIRROR_DATA


# Three posts of our own in TweetEval's layout. Written at test time, not committed, because
# files named like the benchmark's (`train_text.txt`) look like a copy of the real data.
TWEETEVAL_SAMPLE = {
    "mapping.txt": "0\tnegative\n1\tneutral\n2\tpositive\n",
    "train_text.txt": "I hate this reform\nthe bill was read today\nso happy for everyone @user\n",
    "train_labels.txt": "0\n1\n2\n",
}


def write_tweeteval_sample(folder: Path) -> Path:
    """Write TWEETEVAL_SAMPLE into `folder` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in TWEETEVAL_SAMPLE.items():
        (folder / name).write_text(content)
    return folder


def run_coroutine(coroutine):
    """asyncio.run in a thread of its own: once the extension tests have run, Playwright's sync
    API keeps an event loop running in the main thread for the rest of the session."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()
