"""Random windows of the feature grid (train.scst_grid_crop): square, inside the grid, all offsets drawn,
and refused for decoders that read no grid."""
from __future__ import annotations

import pytest
import torch

from captioning.io import InputError
from captioning.models.decoders import DecoderConfig, ImageFeatures, build_decoder
from captioning.params import TrainParams
from captioning.train.grid_crop import random_grid_crops
from captioning.train.loop import train_decoder
from train_toy import toy_split


def _numbered_grid(images: int, side: int) -> ImageFeatures:
    """Cell (r, c) of every image carries channels (r, c): a crop shows where it was cut."""
    r, c = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    grid = torch.stack([r, c], dim=-1).reshape(1, side * side, 2).float().repeat(images, 1, 1)
    return ImageFeatures(torch.zeros(images, 2), grid)


def test_each_image_gets_a_square_window_of_neighbouring_cells_at_a_random_place():
    torch.manual_seed(0)
    crops = random_grid_crops(_numbered_grid(200, 9), 7)
    assert crops.grid.shape == (200, 49, 2)
    cells = crops.grid.view(200, 7, 7, 2)
    top, left = cells[:, 0, 0, 0], cells[:, 0, 0, 1]
    expected_rows = top[:, None, None] + torch.arange(7).float()[None, :, None]
    expected_cols = left[:, None, None] + torch.arange(7).float()[None, None, :]
    assert torch.equal(cells[..., 0], expected_rows.expand(-1, -1, 7))
    assert torch.equal(cells[..., 1], expected_cols.expand(-1, 7, -1))
    assert set(top.tolist()) == {0.0, 1.0, 2.0} and set(left.tolist()) == {0.0, 1.0, 2.0}   # every place inside
    assert torch.allclose(crops.pooled, crops.grid.mean(dim=1))      # the init state sees the window only


def test_a_window_the_size_of_the_grid_changes_nothing_and_a_grid_must_be_square():
    feats = _numbered_grid(3, 4)
    assert random_grid_crops(feats, 4) is feats
    with pytest.raises(ValueError, match="12 cells is not square"):
        random_grid_crops(ImageFeatures(torch.zeros(1, 2), torch.zeros(1, 12, 2)), 2)


def test_a_decoder_without_a_grid_is_refused_by_name(tmp_path):
    train, vocab = toy_split(8, 1)
    val, _ = toy_split(4, 2, vocab)
    p = TrainParams(decoder="show_tell", epochs=1, scst_epochs=1, scst_grid_crop=1)
    decoder = build_decoder("show_tell", DecoderConfig(len(vocab), 8, 8, 16, 32, 1, 0.0))
    with pytest.raises(InputError, match="train.scst_grid_crop = 1.*show_tell"):
        train_decoder(decoder, train, val, vocab, p, 0, torch.device("cpu"), tmp_path, "run")


def test_self_critical_epochs_train_on_windows_and_validate_on_the_whole_grid(tmp_path):
    torch.manual_seed(0)
    train, vocab = toy_split(32, 1)
    val, _ = toy_split(8, 2, vocab)
    p = TrainParams(decoder="soft_attention", epochs=1, batch_size=16, lr=0.003, embed_dim=16, hidden_dim=32,
                    dropout=0.0, lr_schedule="constant", scst_epochs=3, scst_lr=0.01, scst_batch_size=8,
                    scst_samples=4, scst_grid_crop=1)
    decoder = build_decoder("soft_attention", DecoderConfig(len(vocab), 8, 8, 16, 32, 1, 0.0))
    result = train_decoder(decoder, train, val, vocab, p, 0, torch.device("cpu"), tmp_path, "run")
    rewards = [e["train_reward"] for e in result.epoch_log[1:]]
    assert rewards[-1] > rewards[0], rewards
