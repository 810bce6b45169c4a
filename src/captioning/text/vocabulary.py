"""Word vocabulary: counted on the training captions, saved as JSON (never pickled)."""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from captioning.io import InputError, atomic_write_json, read_json
from captioning.text.tokenizer import detokenize, tokenize

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]  # index = token id; the specials come first
    threshold: int
    max_length: int

    def __post_init__(self):
        if tuple(self.words[: len(SPECIALS)]) != SPECIALS:
            raise InputError(f"vocabulary must start with {SPECIALS}")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def id(self, word: str) -> int:
        return self._index.get(word, self.unk_id)

    def encode(self, caption: str) -> list[int]:
        """<start> w1 .. wn <end>, with at most `max_length` words (longer captions are truncated)."""
        words = tokenize(caption)[: self.max_length]
        return [self.start_id, *(self.id(w) for w in words), self.end_id]

    def decode(self, ids: Iterable[int]) -> str:
        """The caption for people: words up to the first <end>, specials dropped, detokenized (`don't`, `dog's`).

        tokenize() of the result gives these words back (tests check it on real captions).
        """
        out = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i >= len(SPECIALS):
                out.append(self.words[i])
        return detokenize(out)

    @property
    def digest(self) -> str:
        """A short hash of the word list: the model records it so a mismatched vocabulary is caught."""
        return hashlib.sha256("\n".join(self.words).encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "max_length": self.max_length, "size": len(self),
                "digest": self.digest, "words": list(self.words)}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_json(), indent=None)

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        raw = read_json(path)
        try:
            vocab = cls(tuple(raw["words"]), int(raw["threshold"]), int(raw["max_length"]))
        except (KeyError, TypeError) as e:
            raise InputError(f"{path}: not a vocabulary file (missing {e}); "
                             "rebuild it with `dvc repro vocab`") from None
        if raw.get("digest") not in (None, vocab.digest):
            raise InputError(f"{path}: word list does not match its recorded digest; rebuild with `dvc repro vocab`")
        return vocab


def build_vocabulary(captions: Iterable[str], threshold: int, max_length: int) -> tuple[Vocabulary, Counter]:
    """Keep words seen at least `threshold` times; ties broken alphabetically so the order is stable."""
    counts = Counter(w for c in captions for w in tokenize(c))
    kept = sorted((w for w, n in counts.items() if n >= threshold), key=lambda w: (-counts[w], w))
    return Vocabulary(SPECIALS + tuple(kept), threshold, max_length), counts


def coverage(vocab: Vocabulary, captions: Sequence[str]) -> float:
    """Share of word tokens in `captions` that the vocabulary knows (not <unk>)."""
    tokens = [w for c in captions for w in tokenize(c)]
    return sum(w in vocab for w in tokens) / len(tokens) if tokens else 0.0


def vocab_stats(vocab: Vocabulary, train_captions: Sequence[str], val_captions: Sequence[str],
                counts: Counter) -> dict:
    return {"size": len(vocab), "threshold": vocab.threshold, "words_seen": len(counts),
            "train_coverage": round(coverage(vocab, train_captions), 6),
            "val_coverage": round(coverage(vocab, val_captions), 6)}
