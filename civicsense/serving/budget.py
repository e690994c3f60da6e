"""A request's cost, bounded: its texts cut into chunks of bounded size, and the error a request
gets when its time budget (Settings.request_timeout_seconds) runs out."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

RETRY_AFTER_SECONDS = 1


class RequestTimedOut(Exception):
    """The request's time budget ran out before its texts were scored (HTTP 503)."""

    def __init__(self, budget: float):
        super().__init__(f"the request took longer than its time budget of {budget:g} s; send "
                         "fewer or shorter texts, or retry later")


def chunks(texts: list[str], max_chars: int) -> Iterator[list[str]]:
    """Consecutive runs of texts of at most max_chars characters in all (a longer text alone)."""
    chunk: list[str] = []
    size = 0
    for text in texts:
        if chunk and size + len(text) > max_chars:
            yield chunk
            chunk, size = [], 0
        chunk.append(text)
        size += len(text)
    if chunk:
        yield chunk


def merge_scores(answers: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The (probabilities, descriptors) of each chunk, stacked back in request order."""
    if len(answers) == 1:
        return answers[0]
    return (np.concatenate([probabilities for probabilities, _ in answers]),
            np.concatenate([descriptors for _, descriptors in answers]))
