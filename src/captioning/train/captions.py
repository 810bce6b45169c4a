"""Training pairs (image row, caption tokens) and their batching.

Batches are built from a seeded permutation per epoch, so a resumed run sees exactly the same data
order. Captions of similar length are grouped (bucketing) so little time goes to padding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from captioning.text.vocabulary import Vocabulary


@dataclass
class CaptionPairs:
    rows: np.ndarray      # [N] row of the image in the feature store
    tokens: np.ndarray    # [N, T] <start> w1 .. wn <end> <pad>...
    lengths: np.ndarray   # [N] tokens before padding

    def __len__(self) -> int:
        return len(self.rows)


def build_pairs(coco: dict, row_of: dict[int, int], vocab: Vocabulary) -> CaptionPairs:
    """One pair per caption of every image that has features (images skipped by resize have none)."""
    rows, seqs = [], []
    for ann in sorted(coco["annotations"], key=lambda a: (a["image_id"], a.get("id", 0))):
        row = row_of.get(ann["image_id"])
        if row is None:
            continue
        rows.append(row)
        seqs.append(vocab.encode(ann["caption"]))
    width = max((len(s) for s in seqs), default=2)
    tokens = np.full((len(seqs), width), vocab.pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = s
    return CaptionPairs(np.asarray(rows, dtype=np.int64), tokens, np.asarray([len(s) for s in seqs], dtype=np.int64))


def epoch_batches(pairs: CaptionPairs, batch_size: int, seed: int, epoch: int, bucket: int = 50) -> list[np.ndarray]:
    """Shuffle, sort by length within chunks of `bucket` batches, then shuffle the batches."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(pairs))
    chunk = batch_size * bucket
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(-pairs.lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def image_grouped_batches(pairs: CaptionPairs, batch_size: int, seed: int, epoch: int,
                          bucket: int = 50) -> list[np.ndarray]:
    """Batches of whole images (all their captions, about `batch_size` captions in all), for decoders that
    share per-image work among an image's captions. Images with similar longest captions are grouped."""
    rng = np.random.default_rng([seed, epoch])
    by_row = np.argsort(pairs.rows, kind="stable")
    images, first = np.unique(pairs.rows[by_row], return_index=True)
    captions_of = np.split(by_row, first[1:])
    per_batch = max(1, round(batch_size * len(images) / max(len(pairs), 1)))
    longest = np.array([pairs.lengths[c].max() for c in captions_of])
    order = rng.permutation(len(images))
    chunk = per_batch * bucket
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(-longest[part], kind="stable")]
        batches.extend(np.concatenate([captions_of[i] for i in part[j : j + per_batch]])
                       for j in range(0, len(part), per_batch))
    return [batches[i] for i in rng.permutation(len(batches))]


def image_batches(n_images: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Self-critical epochs go over images (each sampled several times), in a seeded order."""
    order = np.random.default_rng([seed, epoch]).permutation(n_images)
    return [order[i:i + batch_size] for i in range(0, n_images, batch_size)]
