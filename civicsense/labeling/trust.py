"""When readers' feedback may become a training label without an annotator: enough distinct
clients agree, and they are a strict majority of the clients who spoke about that post.

Feedback is never trusted blindly. Every post with feedback enters the labeling queue
(civicsense.labeling.queue); its label reaches training either through an annotator's
annotation (an annotations snapshot) or through `consensus` here, which counts clients, not
records: one client id's flood of a thousand records counts once (its latest label), so a single
client, however loud, never makes a consensus when `min_clients` >= 2. The feedback route's per
client and per peer rate limits bound how many client ids one sender can cycle through.
"""

from __future__ import annotations

import pandas as pd

CONSENSUS_COLUMNS = ["post_key", "text", "label", "clients", "total_clients", "first_time"]


def consensus(feedback: pd.DataFrame, min_clients: int) -> pd.DataFrame:
    """The posts whose feedback agrees: for each post_key, each client's latest label counts
    once; a label wins when at least `min_clients` distinct clients chose it and they are more
    than half of the post's distinct clients. Columns CONSENSUS_COLUMNS (`clients` agreeing,
    `total_clients` who spoke, `first_time` of the post's first feedback), one row per post,
    sorted by post_key. `feedback` has the feedback log's columns (read_feedback)."""
    if min_clients < 1:
        raise ValueError(f"min_clients must be at least 1, not {min_clients}")
    if feedback.empty:
        return pd.DataFrame(columns=CONSENSUS_COLUMNS)
    frame = feedback.sort_values("time", kind="stable")
    first_time = frame.groupby("post_key")["time"].min()
    text = frame.groupby("post_key")["text"].last()
    latest = frame.drop_duplicates(["post_key", "client_id"], keep="last")
    total = latest.groupby("post_key")["client_id"].nunique()
    votes = latest.groupby(["post_key", "label"])["client_id"].nunique().rename("clients")
    votes = votes.reset_index().sort_values(["post_key", "clients", "label"],
                                            ascending=[True, False, True], kind="stable")
    best = votes.drop_duplicates("post_key", keep="first").set_index("post_key")
    best["total_clients"] = best.index.map(total)
    best = best[(best["clients"] >= min_clients) & (2 * best["clients"] > best["total_clients"])]
    out = best.reset_index()
    out["text"], out["first_time"] = out["post_key"].map(text), out["post_key"].map(first_time)
    out = out[CONSENSUS_COLUMNS].sort_values("post_key", kind="stable").reset_index(drop=True)
    return out.astype({"clients": "int64", "total_clients": "int64"})
