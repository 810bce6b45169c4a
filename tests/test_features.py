import json

import numpy as np
import pytest
import torch
from PIL import Image

from captioning.features.extract import extract_split
from captioning.features.store import FeatureStore
from captioning.io import InputError
from captioning.models.decoders import DecoderConfig, build_decoder
from captioning.models.encoders import ENCODERS, build_encoder
from captioning.params import TrainParams
from captioning.text.vocabulary import build_vocabulary
from captioning.train.captions import build_pairs
from captioning.train.loop import train_decoder
from captioning.train.split_data import SplitData, choose_mirrored


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in (7, 3, 11):
        Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return folder


def test_store_matches_direct_encoder_output(image_dir, tmp_path):
    meta = extract_split(image_dir, [7, 3, 11], tmp_path, "efficientnet_lite0", "imagenet", batch_size=2)
    store = FeatureStore(tmp_path)
    assert store.ids == [7, 3, 11] and meta["count"] == 3
    assert store.pooled.dtype == np.float16 and store.pooled.shape == (3, 1280) and store.grid.shape == (3, 49, 1280)
    spec, encoder = build_encoder("efficientnet_lite0", "imagenet")
    with torch.inference_mode(), Image.open(image_dir / "3.jpg") as im:
        pooled, grid = encoder(spec.preprocess(im).unsqueeze(0))
    np.testing.assert_allclose(store.pooled[1], pooled[0].numpy(), atol=2e-2, rtol=1e-2)
    np.testing.assert_allclose(store.grid[1], grid[0].numpy(), atol=2e-2, rtol=1e-2)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary files left


def test_extraction_says_when_images_are_smaller_than_the_encoder_input(image_dir, tmp_path, capsys):
    extract_split(image_dir, [7], tmp_path / "lite0", "efficientnet_lite0", "none", batch_size=1)
    assert "upsampled" not in capsys.readouterr().out
    extract_split(image_dir, [7], tmp_path / "lite2", "efficientnet_lite2", "none", batch_size=1)
    said = capsys.readouterr().out
    assert "224x224 images" in said and "260x260" in said and "resize.image_size=260" in said


def test_store_refuses_inconsistent_files(image_dir, tmp_path):
    extract_split(image_dir, [7, 3], tmp_path, "efficientnet_lite0", "none", batch_size=2)
    (tmp_path / "ids.json").write_text(json.dumps([7, 3, 11]))
    with pytest.raises(InputError, match="3 ids but pooled has 2 rows"):
        FeatureStore(tmp_path)


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_every_encoder_feeds_one_training_step(image_dir, tmp_path, encoder):
    """Features stage code, then one step of the train loop on them: every encoder once (random weights:
    torchvision's ImageNet weights need the network)."""
    extract_split(image_dir, [7, 3, 11], tmp_path / "f", encoder, "none", batch_size=2)
    store = FeatureStore(tmp_path / "f")
    spec = ENCODERS[encoder]
    assert store.grid.shape == (3, spec.grid_hw[0] * spec.grid_hw[1], spec.pooled_dim)
    vocab, _ = build_vocabulary(["a red shape", "a blue shape"], 1, 8)
    coco = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in store.ids],
            "annotations": [{"id": n, "image_id": i, "caption": "a red shape"} for n, i in enumerate(store.ids)]}
    data = SplitData(store.pooled, store.grid, store.ids, build_pairs(coco, store.row_of, vocab),
                     {i: ["a red shape"] for i in store.ids})
    decoder = build_decoder("soft_attention",
                            DecoderConfig(len(vocab), spec.pooled_dim, spec.pooled_dim, 8, 16, 1, 0.0))
    p = TrainParams(decoder="soft_attention", epochs=1, batch_size=4, embed_dim=8, hidden_dim=16)
    before = [x.detach().clone() for x in decoder.parameters()]
    result = train_decoder(decoder, data, data, vocab, p, 0, torch.device("cpu"), tmp_path / "state", {"run": "x"})
    assert result.epochs_run == 1 and result.step_log[0][2] == "loss" and np.isfinite(result.step_log[0][3])
    assert any(not torch.equal(a, b) for a, b in zip(before, decoder.parameters()))


def test_mirrored_store_holds_the_features_of_the_mirror_images(tmp_path):
    """features.mirror_train: the second pair of arrays, row for row, is what the encoder gives for the
    image flipped left-right (checked against a folder where image 2 is image 1's mirror)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 255, (224, 224, 3), dtype=np.uint8))
    photo.save(folder / "1.jpg", quality=100)
    photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "2.jpg", quality=100)
    meta = extract_split(folder, [1, 2], tmp_path / "f", "efficientnet_lite0", "imagenet", batch_size=2, mirror=True)
    store = FeatureStore(tmp_path / "f")
    assert meta["mirrored"] and store.mirrored is not None
    mirrored_pooled, mirrored_grid = store.mirrored
    assert not np.allclose(store.grid[0], store.grid[1], atol=0.1)   # the mirror is a different input
    np.testing.assert_allclose(mirrored_grid[0], store.grid[1], atol=0.15)   # JPEG re-encoding differs a little
    np.testing.assert_allclose(mirrored_pooled[0], store.pooled[1], atol=0.05)

    extract_split(folder, [1, 2], tmp_path / "f", "efficientnet_lite0", "none", batch_size=2)
    assert FeatureStore(tmp_path / "f").mirrored is None   # a rerun without mirrors leaves none behind


def test_training_reads_each_row_mirrored_where_the_epoch_says():
    pooled = np.arange(4, dtype=np.float16)[:, None].repeat(2, axis=1)
    grid = pooled[:, None, :].repeat(3, axis=1)
    data = SplitData(pooled, grid, [10, 11, 12, 13], None, {}, mirrored=(-pooled, -grid))
    data.show_mirror = np.array([False, True, True, False])
    feats = data.features(np.array([3, 2, 1, 1, 0]), "cpu", zero=False, need_grid=True)
    assert feats.pooled[:, 0].tolist() == [3, -2, -1, -1, 0]
    assert feats.grid[:, 0, 0].tolist() == [3, -2, -1, -1, 0]


def test_mirror_choice_is_seeded_per_epoch_and_about_half():
    chosen = choose_mirrored(4000, 0, 3)
    assert np.array_equal(chosen, choose_mirrored(4000, 0, 3))        # a resumed epoch sees the same
    assert not np.array_equal(chosen, choose_mirrored(4000, 0, 4))    # the next epoch others
    assert 1800 < chosen.sum() < 2200
    assert (chosen == (np.random.default_rng([0, 3, 1]).random(4000) < 0.5)).all()   # the recipe's draw


def test_a_mirrored_image_is_trained_on_its_captions_with_left_and_right_swapped():
    """On the synthetic scenes (captions mostly about position): the mirror of "a red circle on the left"
    is trained on "a red circle on the right", the image itself on its own words."""
    import random

    from captioning.data.synthetic import captions, random_scene
    from captioning.train.split_data import mirror_token_map

    rng = random.Random(0)
    texts = [c for _ in range(40) for c in captions(random_scene(rng))]
    sided = [t for t in texts if " left" in t and " right" not in t]
    assert sided, "the synthetic captions should mention a side"
    vocab, _ = build_vocabulary(texts, 1, 30)
    coco = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in (1, 2)],
            "annotations": [{"id": i, "image_id": i, "caption": sided[0]} for i in (1, 2)]}
    pairs = build_pairs(coco, {1: 0, 2: 1}, vocab)
    pooled = np.zeros((2, 4), dtype=np.float16)
    data = SplitData(pooled, None, [1, 2], pairs, {}, mirrored=(pooled, None), mirror_tokens=mirror_token_map(vocab))
    data.show_mirror = np.array([False, True])
    tokens = data.caption_tokens(np.array([0, 1]), pairs.tokens.shape[1])
    assert vocab.decode(tokens[0]) == vocab.decode(pairs.tokens[0])
    assert vocab.decode(tokens[1]) == vocab.decode(pairs.tokens[0]).replace("left", "right")
