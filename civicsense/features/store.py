"""Feature build: fit the featurizer on the training split, write features to Feast's offline
store, apply the feature repo, materialize online, and read training sets back point-in-time."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import yaml

from civicsense.data.split import SplitMethod, sample_and_split
from civicsense.features.encoder.artifact import TrainedEncoder
from civicsense.features.featurizer import (
    DESCRIPTOR_NAMES,
    ENCODER_NAMES,
    FEATURE_SERVICE,
    Featurizer,
    encoder_matrix,
    from_feast_columns,
    to_feast_columns,
)
from civicsense.settings import Settings

log = logging.getLogger(__name__)
KEPT_BUILDS = 4  # per-build copies of the offline features kept beside the store
# The split of training posts the encoder was fine-tuned on: the featurizer fits on them (with
# the 'train' posts), the booster never trains on them (their encoder outputs are in-sample).
ENCODER_SPLIT = "encoder"


@dataclass
class FeatureBuild:
    """What the build hands on: labelled entity rows with their split, and the fitted featurizer."""

    entities: pd.DataFrame  # post_id, created_at, text, label, split (, source)
    featurizer: Featurizer
    features_path: Path


def load_definitions(settings: Settings) -> ModuleType:
    """The declarative feature_repo/definitions.py, imported from wherever the repo lives."""
    path = settings.feature_repo / "definitions.py"
    spec = importlib.util.spec_from_file_location("civicsense_feature_definitions", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no Feast definitions at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def feature_store(settings: Settings):
    """A FeatureStore configured by feature_repo/feature_store.yaml, state under home/feast."""
    from feast import FeatureStore, RepoConfig

    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    text = (settings.feature_repo / "feature_store.yaml").read_text()
    config = yaml.safe_load(text.replace("${CIVICSENSE_FEAST_DIR}", str(settings.feast_dir)))
    # The definitions' file source is relative: Feast resolves it against repo_path.
    return FeatureStore(config=RepoConfig(repo_path=settings.feast_dir, **config))


def build_features(
    snapshot: pd.DataFrame,
    settings: Settings,
    split_method: SplitMethod = "time",
    validation_fraction: float = 0.2,
    sample_size: int = 0,
    seed: int = 0,
    encoder: TrainedEncoder | None = None,
) -> FeatureBuild:
    """Featurize the snapshot into Feast and return the entity rows for training (sampled and
    split by data.split.sample_and_split: new labels always kept, and trained on). With a
    fine-tuned `encoder`, the training posts it saw get split 'encoder' and its outputs join
    the features."""
    rows = sample_and_split(snapshot, split_method, validation_fraction, sample_size, seed)
    if encoder is not None:
        rows = mark_encoder_rows(rows, encoder.trained_on)
    is_train = (rows["split"] != "validation").to_numpy()
    featurizer = Featurizer(encoder=encoder.encoder if encoder is not None else None)
    encoded = encoder_outputs(rows, encoder) if encoder is not None else None
    log.info("fitting the featurizer on %d training posts", int(is_train.sum()))
    train_features = featurizer.fit_transform(
        rows.loc[is_train, "text"], rows.loc[is_train, "label"],
        encoded[is_train] if encoded is not None else None)
    validation_features = featurizer.transform(
        rows.loc[~is_train, "text"], encoded[~is_train] if encoded is not None else None)
    features = pd.concat([train_features.set_axis(rows.index[is_train]),
                          validation_features.set_axis(rows.index[~is_train])]).sort_index()

    definitions = load_definitions(settings)
    features_path = settings.feast_dir / definitions.post_features_source.path
    stored = to_feast_columns(features)
    stored.insert(0, "post_id", rows["post_id"].to_numpy())
    stored.insert(1, "created_at", rows["created_at"].to_numpy())
    features_path.parent.mkdir(parents=True, exist_ok=True)
    stored.to_parquet(features_path, index=False)
    _keep_copy(features_path, build_key(rows))

    store = feature_store(settings)
    store.apply(definitions.DEFINITIONS)
    start = rows["created_at"].min() - pd.Timedelta(seconds=1)
    end = rows["created_at"].max() + pd.Timedelta(seconds=1)
    log.info("materializing %d posts to the online store", len(rows))
    store.materialize(start_date=start.to_pydatetime(), end_date=end.to_pydatetime())
    # source (the raw file a post came from) feeds evaluate's slices (sarcasm file, year).
    keep = ["post_id", "created_at", "text", "label", "split"]
    entities = rows[keep + (["source"] if "source" in rows else [])]
    return FeatureBuild(entities, featurizer, features_path)


def mark_encoder_rows(rows: pd.DataFrame, trained_on: frozenset[str]) -> pd.DataFrame:
    """`rows` with split 'encoder' for the training posts in `trained_on`; every one of those
    must be a training post here, or the encoder came from another split of the data."""
    seen = rows["post_id"].astype(str).isin(trained_on).to_numpy()
    if int(seen.sum()) != len(trained_on) or (rows.loc[seen, "split"] != "train").any():
        raise ValueError(
            f"the encoder was fine-tuned on {len(trained_on)} posts, of which "
            f"{int((seen & (rows['split'] == 'train')).sum())} are training posts of this "
            "feature build: it was fitted on another sample or split of the data")
    return rows.assign(split=rows["split"].where(~seen, ENCODER_SPLIT))


def encoder_outputs(rows: pd.DataFrame, encoder: TrainedEncoder) -> np.ndarray:
    """The encoder's feature columns for `rows` (ENCODER_NAMES order): the encoder step's own
    outputs where it scored the same post and text with this very model, NaN for the posts it
    was fine-tuned on (split 'encoder': in-sample outputs, which nothing reads), and encoded
    here for any other post."""
    matrix = np.full((len(rows), len(ENCODER_NAMES)), np.nan, dtype=np.float32)
    texts = rows["text"].astype(str).to_numpy()
    found = np.zeros(len(rows), dtype=bool)
    if encoder.outputs is not None and len(encoder.outputs):
        scored = encoder.outputs.drop_duplicates("post_id").set_index("post_id")
        where = scored.index.get_indexer(rows["post_id"].astype(str))
        found = (where >= 0) & (scored["text"].to_numpy()[np.maximum(where, 0)] == texts)
        if found.any():
            picked = scored.iloc[where[found]]
            matrix[found] = encoder_matrix(np.vstack(picked["embedding"].to_numpy()),
                                           np.vstack(picked["probabilities"].to_numpy()))
    missing = ~found & (rows["split"] != ENCODER_SPLIT).to_numpy()
    log.info("encoder outputs: %d from the encoder step, %d to encode, %d fine-tuned on",
             int(found.sum()), int(missing.sum()),
             int((rows["split"] == ENCODER_SPLIT).sum()))
    if missing.any():
        matrix[missing] = encoder_matrix(*encoder.encoder.encode(texts[missing].tolist()))
    return matrix


def build_key(entities: pd.DataFrame) -> str:
    """Which feature build a set of entity rows came from: a hash of the rows (id, time, text,
    label, split): the featurizer's fit depends on all of them."""
    columns = entities[["post_id", "created_at", "text", "label", "split"]].astype(str)
    digest = int(pd.util.hash_pandas_object(columns, index=False).sum()) & (2**64 - 1)
    return f"{digest:016x}-{len(columns)}"


def _builds_dir(features_path: Path) -> Path:
    return features_path.parent / "feature-builds"


def _keep_copy(features_path: Path, key: str) -> None:
    """Keep this build's offline features under its key (the newest KEPT_BUILDS builds)."""
    builds = _builds_dir(features_path)
    builds.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(features_path, builds / f"{key}.parquet")
    for old in sorted(builds.glob("*.parquet"), key=lambda p: p.stat().st_mtime)[:-KEPT_BUILDS]:
        old.unlink(missing_ok=True)


def restore_build(settings: Settings, entities: pd.DataFrame) -> None:
    """Point the offline store back at the build `entities` came from. KFP's cache can hand
    train a feature build from an earlier run while the store holds a later build (another data
    source, `run --labels`): same posts with other out-of-fold scores, or missing posts."""
    features_path = settings.feast_dir / load_definitions(settings).post_features_source.path
    copy = _builds_dir(features_path) / f"{build_key(entities)}.parquet"
    if copy.is_file() and (not features_path.is_file()
                           or copy.read_bytes() != features_path.read_bytes()):
        log.info("restoring the offline features of build %s", copy.stem)
        shutil.copyfile(copy, features_path)


def training_frame(settings: Settings, entities: pd.DataFrame,
                   build: pd.DataFrame | None = None) -> pd.DataFrame:
    """Flat features for `entities` from the offline store, point-in-time joined, in row order;
    the store is first pointed at the build of `build` (the whole build's entity rows, default
    `entities`)."""
    restore_build(settings, entities if build is None else build)
    store = feature_store(settings)
    entity_df = pd.DataFrame({
        "post_id": entities["post_id"].to_numpy(),
        "event_timestamp": entities["created_at"].to_numpy(),
        "row": range(len(entities)),
    })
    service = store.get_feature_service(FEATURE_SERVICE)
    joined = store.get_historical_features(entity_df=entity_df, features=service).to_df()
    joined = joined.sort_values("row").reset_index(drop=True)
    # Descriptors are never NaN; a post the store lacks has NaN in every feature
    if len(joined) != len(entities) or joined[list(DESCRIPTOR_NAMES)].isna().any().any():
        raise RuntimeError(
            "the feature store has no features for some training posts: it was rebuilt for "
            "other data since the feature build and its copy is gone; rerun the pipeline "
            "without the cache"
        )
    return from_feast_columns(joined)
