"""The vocab stage: count the training captions, keep frequent words, measure coverage."""
from __future__ import annotations

from pathlib import Path

from captioning.data.coco import load_captions
from captioning.io import atomic_write_json
from captioning.text.vocabulary import build_vocabulary, vocab_stats


def run_vocab(train_json: Path, val_json: Path, threshold: int, max_length: int, out_vocab: Path,
              out_metrics: Path) -> dict:
    train = [a["caption"] for a in load_captions(train_json)["annotations"]]
    val = [a["caption"] for a in load_captions(val_json)["annotations"]]
    vocab, counts = build_vocabulary(train, threshold, max_length)
    vocab.save(out_vocab)
    stats = vocab_stats(vocab, train, val, counts)
    atomic_write_json(out_metrics, stats)
    return stats
