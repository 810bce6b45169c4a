"""The vocab stage: count the training captions, keep frequent words, measure coverage."""
from __future__ import annotations

from pathlib import Path

from captioning.data.coco import load_captions
from captioning.io import InputError, atomic_write_json
from captioning.text.vocabulary import SPECIALS, Vocabulary, build_vocabulary, vocab_stats

LOW_COVERAGE = 0.9     # below this share of training words known, captions are mostly <unk>


def check_vocabulary(vocab: Vocabulary, counts, train_json: Path) -> None:
    """Refuse what can only train a model of special tokens: no words at all, or none frequent enough."""
    if not counts:
        raise InputError(f"{train_json}: every training caption tokenizes to nothing; check the captions' "
                         "text (the `caption` field of each annotation)")
    if len(vocab) == len(SPECIALS):
        raise InputError(f"vocab.threshold = {vocab.threshold}: no word is seen that often in the training "
                         f"captions of {train_json} ({len(counts)} distinct words, the most frequent "
                         f"{max(counts.values())} times); lower it")


def run_vocab(train_json: Path, val_json: Path, threshold: int, max_length: int, out_vocab: Path,
              out_metrics: Path) -> dict:
    train = [a["caption"] for a in load_captions(train_json)["annotations"]]
    val = [a["caption"] for a in load_captions(val_json)["annotations"]]
    vocab, counts = build_vocabulary(train, threshold, max_length)
    check_vocabulary(vocab, counts, train_json)
    stats = vocab_stats(vocab, train, val, counts)
    if stats["train_coverage"] < LOW_COVERAGE:
        print(f"vocab: warning: only {stats['train_coverage']:.1%} of the training words are in the vocabulary "
              f"(vocab.threshold={threshold}); the rest become <unk>: lower vocab.threshold")
    vocab.save(out_vocab)
    atomic_write_json(out_metrics, stats)
    return stats
