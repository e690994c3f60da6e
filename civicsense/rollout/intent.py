"""Rollout intents: what a verb means to reach (the cluster patch and the alias moves), written
before any change to a local journal and to the InferenceService's annotation, so that
`civicsense rollout reconcile` can finish the job after any interruption."""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from civicsense.rollout.patches import RolloutError

INTENT_ANNOTATION = "civicsense.io/rollout-intent"


@dataclass(frozen=True)
class Intent:
    """One rollout step as meant: the merge patch that takes the InferenceService to its target
    and the aliases to set afterwards, in order (None: delete)."""

    action: str
    mode: str
    name: str
    namespace: str
    patch: dict
    aliases: dict[str, str | None]
    summary: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> Intent:
        try:
            return cls(**{key: data[key] for key in cls.__dataclass_fields__})
        except (KeyError, TypeError) as error:
            raise RolloutError(f"unreadable rollout intent ({error})") from None


def annotation_patch(intent: Intent | None) -> dict:
    """The merge patch that records (or, for None, clears) the intent on the InferenceService."""
    return {"metadata": {"annotations": {
        INTENT_ANNOTATION: intent.to_json() if intent else None}}}


def annotated_intent(isvc: dict) -> Intent | None:
    """The intent recorded on the InferenceService, if any (an unreadable one is an error)."""
    raw = ((isvc.get("metadata") or {}).get("annotations") or {}).get(INTENT_ANNOTATION)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise RolloutError(f"the {INTENT_ANNOTATION} annotation is not JSON: "
                           f"{raw[:80]!r}") from None
    return Intent.from_dict(data)


@dataclass(frozen=True)
class Journal:
    """An append-only JSON-lines file of intents and their completion, fsynced per record
    (`<home>/rollout/journal.jsonl`), and the lock that lets one rollout run at a time."""

    path: Path

    @classmethod
    def under(cls, home: Path) -> Journal:
        return cls(home / "rollout" / "journal.jsonl")

    def _append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as out:
            # A line torn by a crash mid-write must not swallow this record: end it first.
            torn = False
            if out.seek(0, os.SEEK_END) > 0:
                out.seek(-1, os.SEEK_END)
                torn = out.read(1) != b"\n"
            out.write((b"\n" if torn else b"") + json.dumps(record, sort_keys=True).encode()
                      + b"\n")
            out.flush()
            os.fsync(out.fileno())

    def records(self) -> list[dict]:
        """Every readable record (a line torn by a crash mid-write is skipped)."""
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return found

    def begin(self, intent: Intent) -> None:
        self._append({"event": "intent", **json.loads(intent.to_json())})

    def finish(self, intent_id: str, outcome: str = "done") -> None:
        self._append({"event": outcome, "id": intent_id,
                      "at": datetime.now(UTC).isoformat(timespec="seconds")})

    def finished(self, intent_id: str) -> bool:
        return any(r.get("id") == intent_id and r.get("event") != "intent"
                   for r in self.records())

    def pending(self, name: str, namespace: str) -> Intent | None:
        """The newest intent for this InferenceService that has not finished, if any."""
        records = self.records()
        closed = {r.get("id") for r in records if r.get("event") != "intent"}
        for record in reversed(records):
            if (record.get("event") == "intent" and record.get("id") not in closed
                    and record.get("name") == name and record.get("namespace") == namespace):
                return Intent.from_dict(record)
        return None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the rollout lock (fails at once when another rollout holds it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / "lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RolloutError("another `civicsense rollout` is running (lock "
                                   f"{self.path.parent / 'lock'})") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
