"""When readers' feedback may become a training label without an annotator: enough distinct
credentials agree, posting from enough distinct peers over enough distinct days, and they are a
strict majority of the credentials that spoke about that post; and how many such labels a
training set may take.

Feedback is never trusted blindly. Every post with feedback enters the labeling queue
(civicsense.labeling.queue), and by default its label reaches training only through an
annotator (an annotations snapshot): consensus labels are off unless
`Settings.feedback_consensus_training` is on (civicsense.labeling.snapshots). Consensus counts
credentials, not records or claimed client ids: the model server takes feedback only with a
credential it signed (civicsense.serving.credentials) and writes its install id and a keyed
hash of the sender's peer address as the record's client id. Feedback without that shape (from
before credentials, or hand-made) never counts. Each install id counts once, with its latest
label; each peer and each day count once however many credentials share them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

from civicsense.settings import Settings

CONSENSUS_COLUMNS = ["post_key", "text", "label", "clients", "peers", "days", "total_clients",
                     "first_time"]
# The same pattern as civicsense.monitoring.feedback_intake.CREDENTIALED_CLIENT, which makes
# these ids (labeling reads the feedback log, never the intake; a test keeps the two equal).
CREDENTIALED_CLIENT = re.compile(r"(?P<install>[0-9a-f]{16})_(?P<peer>[0-9a-f]{12})")


@dataclass(frozen=True)
class TrustRule:
    """What an agreeing label needs: distinct credentials (`min_clients`), distinct peers
    they posted from (`min_peers`) and distinct UTC days (`min_days`)."""

    min_clients: int = 3
    min_peers: int = 3
    min_days: int = 2

    def __post_init__(self) -> None:
        for name in ("min_clients", "min_peers", "min_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")

    @classmethod
    def from_settings(cls, settings: Settings) -> TrustRule:
        return cls(settings.feedback_min_clients, settings.feedback_min_peers,
                   settings.feedback_min_days)

    def describe(self) -> str:
        return (f">= {self.min_clients} credentials from >= {self.min_peers} peers over "
                f">= {self.min_days} days")


def credentialed(feedback: pd.DataFrame) -> pd.DataFrame:
    """The records sent with a credential, with `install`, `peer` and `day` columns."""
    parts = feedback["client_id"].astype(str).str.fullmatch(CREDENTIALED_CLIENT.pattern)
    frame = feedback[parts.fillna(False).astype(bool)]
    split = frame["client_id"].str.extract(CREDENTIALED_CLIENT.pattern)
    times = pd.to_datetime(frame["time"], utc=True)
    return frame.assign(install=split["install"], peer=split["peer"],
                        day=times.dt.strftime("%Y-%m-%d"))


def consensus(feedback: pd.DataFrame, rule: TrustRule) -> pd.DataFrame:
    """The posts whose credentialed feedback agrees: for each post_key each install id's latest
    label counts once; a label wins when the installs that chose it meet `rule` and are more
    than half of the post's installs. Columns CONSENSUS_COLUMNS (`clients`, `peers`, `days` of
    the winning label, `total_clients` who spoke, `first_time` of the post's first credentialed
    feedback), one row per post, sorted by post_key. `feedback` has the feedback log's columns
    (read_feedback)."""
    if feedback.empty:
        return pd.DataFrame(columns=CONSENSUS_COLUMNS)
    frame = credentialed(feedback).sort_values("time", kind="stable")
    if frame.empty:
        return pd.DataFrame(columns=CONSENSUS_COLUMNS)
    first_time = frame.groupby("post_key")["time"].min()
    text = frame.groupby("post_key")["text"].last()
    latest = frame.drop_duplicates(["post_key", "install"], keep="last")
    total = latest.groupby("post_key")["install"].nunique()
    votes = latest.groupby(["post_key", "label"]).agg(
        clients=("install", "nunique"), peers=("peer", "nunique"), days=("day", "nunique"))
    votes = votes.reset_index().sort_values(["post_key", "clients", "label"],
                                            ascending=[True, False, True], kind="stable")
    best = votes.drop_duplicates("post_key", keep="first").set_index("post_key")
    best["total_clients"] = best.index.map(total)
    best = best[(best["clients"] >= rule.min_clients) & (best["peers"] >= rule.min_peers)
                & (best["days"] >= rule.min_days)
                & (2 * best["clients"] > best["total_clients"])]
    out = best.reset_index()
    out["text"], out["first_time"] = out["post_key"].map(text), out["post_key"].map(first_time)
    out = out[CONSENSUS_COLUMNS].sort_values("post_key", kind="stable").reset_index(drop=True)
    return out.astype({"clients": "int64", "peers": "int64", "days": "int64",
                       "total_clients": "int64"})


def consensus_cap(max_share: float, training_rows: int) -> int:
    """Most consensus labels a training set of `training_rows` other rows may take."""
    return max(0, math.floor(max_share * training_rows))


def capped(agreed: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """At most `max_rows` of `agreed` (consensus's rows): the best supported (most
    credentials, peers, days), then the longest known, sorted by post_key again."""
    if len(agreed) <= max_rows:
        return agreed
    ranked = agreed.sort_values(["clients", "peers", "days", "first_time", "post_key"],
                                ascending=[False, False, False, True, True], kind="stable")
    return ranked.head(max_rows).sort_values("post_key", kind="stable").reset_index(drop=True)
