"""KFP v2 components of the CivicSense training pipeline: thin shells over civicsense.*."""

from civicsense.settings import Settings

# The image the cluster runs every component in (built from components/Dockerfile); the local
# runner ignores it.
COMPONENT_IMAGE = Settings().component_image
