"""One split's training inputs: cached features (memory-mapped), caption pairs and references.

With `features.mirror_train` the training split also holds the features of every image mirrored
left-right; each epoch shows each image or its mirror, drawn from the seed and the epoch number (a
resumed epoch sees the same). A mirror's captions say `right` where the image's say `left`, and the other
way round, in the tokens it is trained on and in the references its SCST samples are scored against."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from captioning.data.coco import load_captions, references_of
from captioning.features.store import FeatureStore
from captioning.models.attached_encoder import ImageRows, encode_images
from captioning.models.decoders import ImageFeatures
from captioning.text.vocabulary import Vocabulary
from captioning.train.captions import CaptionPairs, build_pairs

MIRRORED_WORDS = {"left": "right", "right": "left"}


def mirror_token_map(vocab: Vocabulary) -> Optional[np.ndarray]:
    """Token id -> the id a mirror image's caption has in its place (None when the vocabulary lacks a side)."""
    if not all(w in vocab for w in MIRRORED_WORDS):
        return None
    mapping = np.arange(len(vocab))
    for word, other in MIRRORED_WORDS.items():
        mapping[vocab.id(word)] = vocab.id(other)
    return mapping


def mirror_words(words: list[str]) -> list[str]:
    return [MIRRORED_WORDS.get(w, w) for w in words]


def choose_mirrored(images: int, seed: int, epoch: int) -> np.ndarray:
    """Per image, whether this epoch shows its mirror (about half of them; seeded per epoch)."""
    return np.random.default_rng([seed, epoch, 1]).random(images) < 0.5


@dataclass
class SplitData:
    pooled: np.ndarray                 # [N, D] (memory-mapped float16 is fine)
    grid: Optional[np.ndarray]         # [N, L, C] or None
    ids: list[int]                     # image id per row
    pairs: CaptionPairs
    references: dict[int, list[str]]   # image id -> reference captions
    images: Optional[ImageRows] = None  # the images themselves, for train.finetune_encoder
    mirrored: Optional[tuple[np.ndarray, np.ndarray]] = None   # (pooled, grid) of the mirror images, row for row
    show_mirror: Optional[np.ndarray] = None   # [N] bool: rows read from `mirrored` (set per epoch)
    mirror_tokens: Optional[np.ndarray] = None  # mirror_token_map of the vocabulary

    def choose_views(self, seed: int, epoch: int) -> None:
        """Which rows this epoch reads mirrored (nothing to choose without mirror features)."""
        if self.mirrored is not None:
            self.show_mirror = choose_mirrored(len(self.ids), seed, epoch)

    def flipped(self, rows: np.ndarray, encoder: Optional[nn.Module] = None) -> np.ndarray:
        """Which of `rows` this epoch shows mirrored (never when a training encoder reads the images)."""
        rows = np.asarray(rows)
        if self.show_mirror is None or self.mirrored is None or (encoder is not None and self.images is not None):
            return np.zeros(len(rows), dtype=bool)
        return self.show_mirror[rows]

    def caption_tokens(self, pairs: np.ndarray, length: int, encoder: Optional[nn.Module] = None) -> np.ndarray:
        """Tokens of the captions `pairs` (first `length`), with left and right swapped for mirrored images."""
        tokens = self.pairs.tokens[pairs, :length]
        flipped = self.flipped(self.pairs.rows[pairs], encoder)
        if self.mirror_tokens is not None and flipped.any():
            tokens = tokens.copy()
            tokens[flipped] = self.mirror_tokens[tokens[flipped]]
        return tokens

    def _rows(self, original: np.ndarray, mirror_index: int, rows: np.ndarray) -> np.ndarray:
        out = np.asarray(original[rows], dtype=np.float32)
        flipped = self.flipped(rows)
        if flipped.any():
            out[flipped] = self.mirrored[mirror_index][rows[flipped]]
        return out

    def features(self, rows: np.ndarray, device, zero: bool, need_grid: bool,
                 encoder: Optional[nn.Module] = None) -> ImageFeatures:
        """Cached features of `rows` (mirrored where this epoch says), or (given the model's trainable
        `encoder`) the encoder's on the images."""
        if encoder is not None and self.images is not None:
            feats = encode_images(encoder, self.images.load(rows).to(device), need_grid)
            return feats.zeros_like() if zero else feats
        rows = np.asarray(rows)
        pooled = torch.from_numpy(self._rows(self.pooled, 0, rows))
        grid = torch.from_numpy(self._rows(self.grid, 1, rows)) if need_grid else None
        feats = ImageFeatures(pooled, grid)
        return (feats.zeros_like() if zero else feats).to(device)

    def caption_features(self, rows: np.ndarray, device, zero: bool, need_grid: bool, shared: bool,
                         encoder: Optional[nn.Module] = None) -> ImageFeatures:
        """Features for captions of the images at `rows`: with `shared`, one row per distinct image plus an index
        (the decoder shares its per-image work); an encoder runs once per distinct image either way."""
        if not shared and encoder is None:
            return self.features(rows, device, zero, need_grid)
        images, index = np.unique(rows, return_inverse=True)
        feats = self.features(images, device, zero, need_grid, encoder)
        feats.index = torch.from_numpy(index.reshape(-1)).to(device)
        return feats if shared else feats.per_caption()


def load_split(features_dir: Path, subset_json: Path, vocab: Vocabulary) -> tuple[SplitData, FeatureStore]:
    store = FeatureStore(features_dir)
    coco = load_captions(subset_json)
    pairs = build_pairs(coco, {i: r for r, i in enumerate(store.ids)}, vocab)
    refs = references_of(coco)
    return SplitData(store.pooled, store.grid, list(store.ids), pairs, {i: refs.get(i, []) for i in store.ids},
                     mirrored=store.mirrored, mirror_tokens=mirror_token_map(vocab)), store
