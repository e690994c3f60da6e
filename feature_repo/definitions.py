"""Feast definitions for CivicSense: the post entity, its feature views and the model's service.

Declarative and free of side effects: importing this file reads no settings and touches no file.
The source's path is relative, and Feast resolves it against the store's repo_path, which
civicsense.features.store sets to the state directory ($CIVICSENSE_HOME/feast)."""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float32

from civicsense.features.featurizer import (
    DESCRIPTOR_NAMES,
    ENCODER_NAMES,
    FEATURE_SERVICE,
    LEXICAL_NAMES,
)

FEATURES_FILE = "post_features.parquet"
# Posts never stop being the posts they were; the ttl just has to span the data (2011 onwards).
POST_TTL = timedelta(days=365 * 30)

post = Entity(name="post", join_keys=["post_id"], value_type=ValueType.STRING,
              description="A social-media post (tweet id, or a stable id given by ingest).")

post_features_source = FileSource(
    name="post_features",
    path=FEATURES_FILE,
    timestamp_field="created_at",
)

post_descriptors = FeatureView(
    name="post_descriptors",
    entities=[post],
    ttl=POST_TTL,
    schema=[Field(name=name, dtype=Float32) for name in DESCRIPTOR_NAMES],
    source=post_features_source,
    online=True,
    description="Cheap stateless text descriptors (lengths, emoji, negations, VADER).",
)

post_lexical_scores = FeatureView(
    name="post_lexical_scores",
    entities=[post],
    ttl=POST_TTL,
    schema=[Field(name=name, dtype=Float32) for name in LEXICAL_NAMES],
    source=post_features_source,
    online=True,
    description="The fitted lexical scorer's score per label (out-of-fold for training posts).",
)

# 387 floats a post, one Float32 feature each (featurizer.OPTIONAL_BLOCKS says why no Array):
# training reads them offline; the server computes them from the request's text, so they are
# not materialized online. NaN when the run had no encoder, and for the posts it was tuned on.
post_encoder_vectors = FeatureView(
    name="post_encoder_vectors",
    entities=[post],
    ttl=POST_TTL,
    schema=[Field(name=name, dtype=Float32) for name in ENCODER_NAMES],
    source=post_features_source,
    online=False,
    description="The fine-tuned encoder's head probabilities and sentence embedding.",
)

sentiment_features = FeatureService(
    name=FEATURE_SERVICE,
    features=[post_descriptors, post_lexical_scores, post_encoder_vectors],
    description="Everything the civicsense-sentiment model reads.",
)

# What a lookup by post id can read from the online store (get_online_features): every
# materialized view, not the offline-only encoder outputs.
sentiment_online_features = FeatureService(
    name=f"{FEATURE_SERVICE}_online",
    features=[post_descriptors, post_lexical_scores],
    description="The civicsense-sentiment features the online store holds.",
)

DEFINITIONS = [post, post_features_source, post_descriptors, post_lexical_scores,
               post_encoder_vectors, sentiment_features, sentiment_online_features]
