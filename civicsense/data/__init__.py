"""Data: raw labelled posts from a source to a clean, versioned snapshot and its split."""
