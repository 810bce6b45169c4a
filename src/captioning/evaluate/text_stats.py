"""Statistics of the generated text: length, diversity, vocabulary use, novelty."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

from captioning.text.tokenizer import tokenize


def _normalise(caption: str) -> str:
    return " ".join(tokenize(caption))


def text_statistics(captions: Sequence[str], vocabulary: Iterable[str], train_captions: Iterable[str]) -> dict:
    tokens = [tokenize(c) for c in captions]
    words = Counter(w for t in tokens for w in t)
    vocab = set(vocabulary)
    seen = {_normalise(c) for c in train_captions}
    n = max(len(captions), 1)
    return {
        "captions": len(captions),
        "mean_length": round(sum(len(t) for t in tokens) / n, 4),
        "distinct_words": len(words),
        "vocabulary_used": round(len(set(words) & vocab) / max(len(vocab), 1), 4),
        "distinct_captions": round(len({" ".join(t) for t in tokens}) / n, 4),
        "identical_to_training_caption": round(sum(" ".join(t) in seen for t in tokens) / n, 4),
    }
