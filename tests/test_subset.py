import json

import pytest

from captioning.data.coco import load_captions
from captioning.data.subset import build_subsets
from captioning.data.synthetic import generate_synthetic
from captioning.io import InputError


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate_synthetic(root, 30, 20, 48, seed=0)
    return root


def ids(split):
    return [im["id"] for im in split["images"]]


def test_seeded_sizes_disjoint_and_reproducible(synthetic_root):
    sizes = {"train": 10, "val": 6, "test": 7}
    a, stats = build_subsets("synthetic", synthetic_root, sizes, seed=1)
    b, _ = build_subsets("synthetic", synthetic_root, sizes, seed=1)
    c, _ = build_subsets("synthetic", synthetic_root, sizes, seed=2)
    assert {s: len(a[s]["images"]) for s in a} == sizes
    assert not set(ids(a["val"])) & set(ids(a["test"]))
    assert a == b and a != c
    assert stats["train"]["captions"] == 50


def test_size_larger_than_available_names_the_key(synthetic_root):
    with pytest.raises(InputError, match=r"subset.train = 31 .* 30"):
        build_subsets("synthetic", synthetic_root, {"train": 31, "val": 1, "test": 1}, seed=0)


def test_malformed_json_gives_file_line_and_column(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_train2017.json").write_text('{"images": [\n  {"id": 1,,}]}')
    with pytest.raises(InputError, match=r"captions_train2017.json: not valid JSON at line 2, column"):
        build_subsets("coco2017", tmp_path, {"train": 1, "val": 1, "test": 1}, seed=0)


def test_json_that_is_not_coco_captions_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": []}))
    with pytest.raises(InputError, match=r"x.json: not COCO captions format"):
        load_captions(path)


def test_real_coco_mini(shared_data):
    splits, stats = build_subsets("coco2017", shared_data / "coco_mini", {"train": 40, "val": 10, "test": 10}, seed=0)
    assert stats["train"] == {"images": 40, "captions": 200, "skipped": {}}
    assert not set(ids(splits["val"])) & set(ids(splits["test"]))
    assert all(im["path"].endswith(im["file_name"]) for im in splits["train"]["images"])


def test_real_flickr8k_uses_official_splits(shared_data):
    root = shared_data / "flickr8k"
    splits, stats = build_subsets("flickr8k", root, {"train": 50, "val": None, "test": 20}, seed=0)
    train_names = set((root / "Flickr8k_text" / "Flickr_8k.trainImages.txt").read_text().split())
    dev_names = set((root / "Flickr8k_text" / "Flickr_8k.devImages.txt").read_text().split())
    assert {im["file_name"] for im in splits["train"]["images"]} <= train_names
    assert {im["file_name"] for im in splits["val"]["images"]} <= dev_names     # no test list: val and test share dev
    assert {im["file_name"] for im in splits["test"]["images"]} <= dev_names
    assert len(splits["val"]["images"]) == 980 and stats["train"]["captions"] == 250


def test_bad_captions_and_missing_files_are_skipped_and_counted(tmp_path):
    root = tmp_path / "folder"
    root.mkdir()
    from PIL import Image
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        Image.new("RGB", (8, 8)).save(root / name)
    images = [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}, {"id": 3, "file_name": "c.jpg"},
              {"id": 4, "file_name": "gone.jpg"}]
    long = "a dog " * 400
    anns = [{"id": 1, "image_id": 1, "caption": "A café in Zürich ☕"}, {"id": 2, "image_id": 1, "caption": "   "},
            {"id": 3, "image_id": 2, "caption": ""}, {"id": 4, "image_id": 2, "caption": long},
            {"id": 5, "image_id": 3, "caption": None}, {"id": 6, "image_id": 4, "caption": "a missing file"},
            {"id": 7, "image_id": 99, "caption": "no such image"}]
    (root / "captions.json").write_text(json.dumps({"images": images, "annotations": anns}), encoding="utf-8")
    splits, stats = build_subsets("folder", root, {"train": 2, "val": None, "test": None}, seed=0)
    captions = {a["image_id"]: a["caption"] for a in splits["train"]["annotations"]}
    assert captions[1] == "A café in Zürich ☕"                    # non-ASCII kept as is
    assert len(captions[2]) == 1000                                 # the documented maximum
    assert stats["train"]["skipped"] == {"empty caption": 2, "caption cut to 1000 characters": 1,
                                         "caption not text": 1, "unknown image_id": 1, "no caption": 1,
                                         "missing file": 1}
