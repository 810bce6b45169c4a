"""Image captioning pipeline. `from captioning import Captioner` for captions in Python (see predict.py)."""

__all__ = ["Captioner"]


def __getattr__(name: str):
    if name == "Captioner":       # imported on first use: the pipeline's stages need no torch model to start
        from captioning.predict import Captioner

        return Captioner
    raise AttributeError(f"module 'captioning' has no attribute {name!r}")
