"""CIDEr-D as a training reward, with document frequencies fixed on the training corpus.

Self-critical training scores thousands of sampled captions per step. pycocoevalcap's Cider computes
its document frequencies from the references passed in each call, so a batch of 32 images would
give a different (and noisy) idf every step; the SCST papers fix the idf on the whole training set.
This is pycocoevalcap's CIDEr-D arithmetic (n = 1..4, clipped tf-idf, Gaussian length penalty with
sigma 6, x10) with that one change; tests check it equals pycocoevalcap when both see the same corpus.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np

N = 4
SIGMA = 6.0


def _ngrams(words: Sequence[str]) -> list[Counter]:
    return [Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1)) for n in range(1, N + 1)]


class CiderD:
    """references: image key -> tokenized reference captions (lists of words)."""

    def __init__(self, references: dict[int, list[list[str]]]):
        df: Counter = Counter()
        for refs in references.values():
            df.update({g for ref in refs for grams in _ngrams(ref) for g in grams})
        self._log_images = math.log(float(max(len(references), 1)))
        self._df = df
        self._refs = {key: [self._vector(ref) for ref in refs] for key, refs in references.items()}

    def _vector(self, words: Sequence[str]):
        vec, norms = [], []
        for grams in _ngrams(words):
            weights = {g: tf * (self._log_images - math.log(max(1.0, self._df.get(g, 0.0)))) for g, tf in grams.items()}
            vec.append(weights)
            norms.append(math.sqrt(sum(w * w for w in weights.values())))
        return vec, norms, max(len(words) - 1, 0)   # the toolkit's length is the bigram count

    def score(self, key: int, words: Sequence[str]) -> float:
        vec, norms, length = self._vector(words)
        refs = self._refs[key]
        total = np.zeros(N)
        for ref_vec, ref_norms, ref_length in refs:
            penalty = math.exp(-((length - ref_length) ** 2) / (2 * SIGMA ** 2))
            for n in range(N):
                dot = sum(min(w, ref_vec[n][g]) * ref_vec[n][g] for g, w in vec[n].items() if g in ref_vec[n])
                if norms[n] and ref_norms[n]:
                    total[n] += penalty * dot / (norms[n] * ref_norms[n])
        return float(total.mean() / max(len(refs), 1) * 10.0)
