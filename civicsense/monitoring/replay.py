"""Replay posts through a running model server as traffic (demos and the drift benchmark)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd


class ReplayError(RuntimeError):
    """Nothing to send, or the server refused it."""


def load_posts(sources: Sequence[Path]) -> pd.DataFrame:
    """text and label of every record the ingest readers find in files/folders (SemEval TSV,
    TweetEval `*_text.txt`; labels as the files give them, e.g. stance labels stay stance)."""
    from civicsense.data.ingest import READERS, discover

    rows = []
    for source in sources:
        try:
            found = discover(Path(source))
        except Exception as error:  # noqa: BLE001 - ingest explains what layout it expected
            raise ReplayError(f"{source}: {error}") from None
        for path, kind in found:
            records, _ = READERS[kind](path)
            rows += [{"text": r.text, "label": r.label, "source": path.name}
                     for r in records if r.text and not r.problem]
    if not rows:
        raise ReplayError(f"no texts found in {[str(s) for s in sources]}")
    return pd.DataFrame(rows)


def load_texts(sources: Sequence[Path], limit: int = 0, seed: int = 0) -> list[str]:
    posts = load_posts(sources)
    if 0 < limit < len(posts):
        posts = posts.sample(limit, random_state=seed)
    return posts["text"].tolist()


def replay(texts: Sequence[str], url: str, model: str, batch: int = 32,
           timeout: float = 60.0) -> dict:
    """POST the texts in V1 batches; counts of texts sent and labels returned."""
    import requests

    endpoint = f"{url.rstrip('/')}/v1/models/{model}:predict"
    labels: dict[str, int] = {}
    sent, version = 0, None
    with requests.Session() as session:
        for start in range(0, len(texts), batch):
            chunk = [t[:2000] for t in texts[start:start + batch]]
            try:
                response = session.post(endpoint, json={"instances": chunk}, timeout=timeout)
            except requests.RequestException as error:
                raise ReplayError(f"{endpoint}: {error}") from None
            if response.status_code != 200:
                raise ReplayError(f"{endpoint}: HTTP {response.status_code} {response.text}")
            body = response.json()
            version = body.get("model_version", version)
            for prediction in body["predictions"]:
                labels[prediction["label"]] = labels.get(prediction["label"], 0) + 1
            sent += len(chunk)
    return {"sent": sent, "model_version": version, "labels": labels}
