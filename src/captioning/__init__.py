"""Image captioning pipeline."""
