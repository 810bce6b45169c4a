"""Caption tokenizer: lowercase words, no downloaded NLTK data needed.

Close to what the COCO toolkit's PTB tokenizer does to captions (lowercase, punctuation dropped),
so the vocabulary matches what the metrics will see.
"""
from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(caption: str) -> list[str]:
    return _WORD.findall(caption.lower())
