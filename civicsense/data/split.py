"""Train/validation splits of the snapshot: by time (the default, as production sees it)
or at random."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from civicsense.data.merge import is_labelled

SplitMethod = Literal["time", "random"]


def assign_split(
    frame: pd.DataFrame, method: SplitMethod = "time", validation_fraction: float = 0.2,
    seed: int = 0,
) -> pd.Series:
    """'train' or 'validation' per row. Time: the latest `validation_fraction` of posts by
    created_at (ties, such as undated posts, keep file order). Random: a seeded shuffle."""
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    n_validation = max(1, round(len(frame) * validation_fraction))
    if len(frame) - n_validation < 1:
        raise ValueError(f"{len(frame)} rows are too few to split")
    if method == "time":
        order = np.argsort(frame["created_at"].to_numpy(), kind="stable")
    elif method == "random":
        order = np.random.default_rng(seed).permutation(len(frame))
    else:
        raise ValueError(f"unknown split method {method!r}; use 'time' or 'random'")
    split = np.full(len(frame), "train", dtype=object)
    split[order[len(frame) - n_validation:]] = "validation"
    return pd.Series(split, index=frame.index, name="split")


def stratified_sample(frame: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    """A label-stratified sample of `size` rows in original order (all rows when size <= 0)."""
    if size <= 0 or size >= len(frame):
        return frame
    share = size / len(frame)
    picked = frame.groupby("label", group_keys=False).sample(frac=share, random_state=seed)
    return frame.loc[frame.index.isin(picked.index)]


def labelled_rows(rows: pd.DataFrame) -> np.ndarray:
    """Which rows come from labelled snapshots (data.merge.is_labelled), as a boolean mask."""
    if "source" not in rows:
        return np.zeros(len(rows), dtype=bool)
    return is_labelled(rows["source"]).to_numpy()


def sample_and_split(snapshot: pd.DataFrame, method: SplitMethod = "time",
                     validation_fraction: float = 0.2, sample_size: int = 0,
                     seed: int = 0) -> pd.DataFrame:
    """The rows a feature build uses, in snapshot order, with their `split`. Rows from labelled
    snapshots (new labels, data.merge.is_labelled) are all kept: `sample_size` thins the base
    rows only. The time split trains on every new label and splits the base rows: a label's
    time is when its post was served, after every base post, so the latest-posts rule would
    validate on all of them and train on none. The random split treats them like any row."""
    snapshot = snapshot.reset_index(drop=True)
    labelled = labelled_rows(snapshot)
    base = stratified_sample(snapshot[~labelled], sample_size, seed)
    kept = labelled | snapshot.index.isin(base.index)
    rows, labelled = snapshot[kept].reset_index(drop=True), labelled[kept]
    if method != "time" or not labelled.any():
        return rows.assign(split=assign_split(rows, method, validation_fraction, seed))
    split = pd.Series("train", index=rows.index, name="split", dtype=object)
    split[~labelled] = assign_split(rows[~labelled], method, validation_fraction, seed)
    return rows.assign(split=split)


def training_slice(rows: pd.DataFrame, fraction: float, seed: int = 0) -> np.ndarray:
    """A seeded, label-stratified `fraction` of the rows whose split is 'train', as a boolean
    mask over `rows`: the posts a model stacked under another one trains on (the encoder), so
    the model on top can learn from the rest, on outputs it did not memorise. Posts from
    labelled snapshots are never in it: the model on top always trains on new labels."""
    if not 0 < fraction < 1:
        raise ValueError(f"the slice fraction must be in (0, 1), got {fraction}")
    train = rows[(rows["split"] == "train").to_numpy() & ~labelled_rows(rows)]
    picked = train.groupby("label", group_keys=False).sample(frac=fraction, random_state=seed)
    return rows.index.isin(picked.index)
