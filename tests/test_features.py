import json

import numpy as np
import pytest
import torch
from PIL import Image

from captioning.features.extract import extract_split
from captioning.features.store import FeatureStore
from captioning.io import InputError
from captioning.models.encoders import build_encoder


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


def test_store_refuses_inconsistent_files(image_dir, tmp_path):
    extract_split(image_dir, [7, 3], tmp_path, "efficientnet_lite0", "none", batch_size=2)
    (tmp_path / "ids.json").write_text(json.dumps([7, 3, 11]))
    with pytest.raises(InputError, match="3 ids but pooled has 2 rows"):
        FeatureStore(tmp_path)
