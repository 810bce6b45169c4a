"""data.source: hf: a Hugging Face dataset written once into data/raw as an imagefolder, built from the real
tiny COCO in shared/data (save_to_disk folders; nothing is downloaded)."""
from __future__ import annotations

import io
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from dvc_project import create_project, merge, run
from PIL import Image
from test_imagefolder import coco_mini_rows, write_coco_imagefolder
from test_pipeline import TINY  # its data.synthetic section is unused by these sources

from captioning.data.imagefolder import read_imagefolder
from captioning.data.sources import prepare_source, read_source
from captioning.data.subset import build_subsets
from captioning.io import InputError
from captioning.params import DataParams, HfDatasetParams, parse_params

HUB_NAMES = {"train": "train", "val": "validation"}


def hf_data(name: Path | str, **hf) -> DataParams:
    return DataParams(source="hf", hf=HfDatasetParams(name=str(name), **hf))


@pytest.fixture
def saved_coco_mini(shared_data, tmp_path) -> Path:
    """coco_mini as a DatasetDict (train, validation) built from file paths and saved with save_to_disk."""
    datasets = pytest.importorskip("datasets")
    splits = {}
    for split, rows in coco_mini_rows(shared_data).items():
        table = {"image": [str(image) for image, _ in rows], "captions": [captions for _, captions in rows]}
        splits[HUB_NAMES[split]] = datasets.Dataset.from_dict(table).cast_column("image", datasets.Image())
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


def captions_by_split(splits: dict) -> dict[str, Counter]:
    """Each split's images as a multiset of their caption lists (file names differ between sources)."""
    out = {}
    for name, split in splits.items():
        by_image: dict[int, list[str]] = {}
        for ann in split["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann["caption"])
        out[name] = Counter(tuple(caps) for caps in by_image.values())
    return out


def test_missing_extra_names_the_pip_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)       # `import datasets` raises ImportError
    with pytest.raises(InputError, match=r"data.source = 'hf' needs Hugging Face datasets.*pip install -e '\.\[hf\]'"):
        prepare_source(hf_data("some/dataset"), 0, tmp_path / "raw")


def test_hf_needs_a_dataset_name():
    with pytest.raises(InputError, match="data.hf.name"):
        parse_params({"data": {"source": "hf"}})


def test_saved_dataset_dict_is_written_once_as_an_imagefolder_with_the_same_images(saved_coco_mini, shared_data,
                                                                                   tmp_path):
    raw = tmp_path / "raw"
    info = prepare_source(hf_data(saved_coco_mini), 0, raw)
    assert read_source(raw)["layout"] == "imagefolder" and info["written"] == {"train": {"rows": 40},
                                                                               "val": {"rows": 20}}
    assert sorted(p.name for p in raw.iterdir()) == ["source.json", "train", "val"]
    rows = coco_mini_rows(shared_data)
    written = sorted((raw / "val").glob("*.jpg"))
    assert [p.read_bytes() for p in written] == [image.read_bytes() for image, _ in rows["val"]]   # byte for byte
    pools, skipped = read_imagefolder(raw, info["caption_column"])
    assert [im["captions"] for im in pools["train"]] == [caps for _, caps in rows["train"]]
    assert skipped == {"train": {}, "val": {}, "test": {}}
    splits, stats = build_subsets("hf", raw, {"train": 40, "val": 10, "test": 10}, seed=0)
    assert {s: stats[s]["images"] for s in ("train", "val", "test")} == {"train": 40, "val": 10, "test": 10}
    assert {Path(im["file_name"]).parts[0] for im in splits["test"]["images"]} == {"val"}       # Hub validation


def test_imagefolder_through_load_dataset_reads_as_our_imagefolder_reader(shared_data, tmp_path):
    """The `datasets` library and this project read the same imagefolder the same way; saved, then written
    by the hf source, it gives the same subsets again."""
    datasets = pytest.importorskip("datasets")
    folder = write_coco_imagefolder(shared_data, tmp_path / "folder", "per_split")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(folder), cache_dir=str(tmp_path / "cache"))
    assert sorted(loaded) == ["train", "validation"] and loaded["train"].features["image"] == datasets.Image()
    pools, _ = read_imagefolder(folder)
    for ours, theirs in (("train", "train"), ("val", "validation")):
        assert sorted(map(tuple, loaded[theirs]["text"])) == sorted(tuple(im["captions"]) for im in pools[ours])
    loaded.save_to_disk(str(tmp_path / "saved"))
    prepare_source(hf_data(tmp_path / "saved"), 0, tmp_path / "raw")
    sizes = {"train": None, "val": None, "test": None}
    from_hf, _ = build_subsets("hf", tmp_path / "raw", sizes, seed=0)
    direct, _ = build_subsets("imagefolder", folder, sizes, seed=0)
    ours, theirs = captions_by_split(direct), captions_by_split(from_hf)
    assert theirs["train"] == ours["train"] and len(ours["train"]) == 40
    assert theirs["val"] + theirs["test"] == ours["val"] + ours["test"]        # validation: val and test


def test_one_chosen_split_is_one_pool_and_replaces_the_split_folders(saved_coco_mini, tmp_path):
    raw = tmp_path / "raw"
    prepare_source(hf_data(saved_coco_mini), 0, raw)
    info = prepare_source(hf_data(saved_coco_mini, split="validation"), 0, raw)
    assert sorted(p.name for p in raw.iterdir()) == ["pool", "source.json"]            # train/, val/ removed
    assert info["splits"] == {"pool": [None]} and info["written"]["pool"]["rows"] == 20
    splits, _ = build_subsets("hf", raw, {"train": 10, "val": 5, "test": 5}, seed=0)
    names = [{im["file_name"] for im in splits[s]["images"]} for s in ("train", "val", "test")]
    assert len(set().union(*names)) == 20


def test_other_formats_become_png_and_rows_without_an_image_are_counted(tmp_path):
    datasets = pytest.importorskip("datasets")
    bmp, cmyk = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (9, 7), "blue").save(bmp, format="BMP")
    Image.new("CMYK", (5, 5)).save(cmyk, format="TIFF")
    table = {"picture": [{"bytes": bmp.getvalue(), "path": None}, {"bytes": cmyk.getvalue(), "path": None},
                         None, {"bytes": b"not an image", "path": None}],
             "caption": ["a blue box", "cmyk", "no image", "broken"]}
    ds = datasets.Dataset.from_dict(table).cast_column("picture", datasets.Image())
    ds.save_to_disk(str(tmp_path / "saved"))
    info = prepare_source(hf_data(tmp_path / "saved", image_column="picture"), 0, tmp_path / "raw")
    assert info["written"] == {"pool": {"rows": 4, "no readable image": 2}}
    written = sorted(p.name for p in (tmp_path / "raw" / "pool").glob("*.png"))
    assert written == ["row-0000000.png", "row-0000001.png"]
    with Image.open(tmp_path / "raw" / "pool" / written[0]) as image:
        assert image.size == (9, 7) and image.getpixel((0, 0)) == (0, 0, 255)
    _, stats = build_subsets("hf", tmp_path / "raw", {"train": 1, "val": None, "test": None}, seed=0)
    assert stats["train"]["skipped"] == {"missing file": 2}


@pytest.mark.parametrize("hf, table, words", [
    ({"image_column": "photo"}, None, ["no image column `photo`", "data.hf.image_column", "image, captions"]),
    ({"image_column": "captions"}, None, ["column `captions`", "not images"]),
    ({"caption_column": "label"}, None, ["no `label`", "data.hf.caption_column"]),
    ({}, {"label": [1]}, ["no caption column", "text, captions, caption", "data.hf.caption_column"]),
    ({}, {"text": [3]}, ["row 0", "column `text`", "not a string or a list of strings"]),
])
def test_bad_columns_are_named(saved_coco_mini, tmp_path, hf, table, words):
    datasets = pytest.importorskip("datasets")
    name = saved_coco_mini
    if table is not None:
        table["image"] = [{"bytes": b"unread", "path": None}]       # the row fails before its image is read
        datasets.Dataset.from_dict(table).cast_column("image", datasets.Image()).save_to_disk(str(tmp_path / "t"))
        name = tmp_path / "t"
    with pytest.raises(InputError) as e:
        prepare_source(hf_data(name, **hf), 0, tmp_path / "raw")
    for word in words:
        assert word in str(e.value), str(e.value)


def test_splits_other_than_train_validation_test_point_to_data_hf_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"image": [None], "text": ["x"]}).cast_column("image", datasets.Image())
    datasets.DatasetDict({"train": ds, "extra": ds}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(InputError, match="splits extra are not train, validation or test; choose one with "
                                         "data.hf.split"):
        prepare_source(hf_data(tmp_path / "saved"), 0, tmp_path / "raw")
    with pytest.raises(InputError, match="data.hf.split = 'nope': .* has the splits train, extra"):
        prepare_source(hf_data(tmp_path / "saved", split="nope"), 0, tmp_path / "raw")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["imagefolder", "hf"])
def test_repro_from_a_coco_mini_dataset_to_metrics(shared_data, tmp_path, source):
    """The whole pipeline up to evaluate, from an imagefolder or a saved HF dataset of coco_mini."""
    if source == "hf":
        datasets = pytest.importorskip("datasets")
        rows = coco_mini_rows(shared_data)
        datasets.DatasetDict({HUB_NAMES[s]: datasets.Dataset.from_dict(
            {"image": [str(image) for image, _ in r], "text": [caps for _, caps in r]}).cast_column(
            "image", datasets.Image()) for s, r in rows.items()}).save_to_disk(str(tmp_path / "dataset"))
        data = {"source": "hf", "hf": {"name": str(tmp_path / "dataset")}}
    else:
        data = {"source": "imagefolder", "root": str(write_coco_imagefolder(shared_data, tmp_path / "dataset",
                                                                              "per_split"))}
    work = tmp_path / "project"
    work.mkdir()
    create_project(work, merge(TINY, {"data": data}))
    log = run(["dvc", "repro", "evaluate"], work)
    assert "Running stage 'evaluate'" in log
    counts = json.loads((work / "metrics" / "data.json").read_text())
    assert {s: counts[s]["images"] for s in ("train", "val", "test")} == {"train": 40, "val": 10, "test": 10}
    metrics = json.loads((work / "metrics" / "metrics.json").read_text())
    assert metrics["images"] == 10 and "cider" in metrics
    print(source, json.dumps(metrics))


def test_five_caption_columns_and_a_dev_split_as_hub_flickr8k_copies_have(shared_data, tmp_path):
    """Flickr8k on the Hub keeps one caption per column (caption_0 .. caption_4) and calls val `dev`."""
    datasets = pytest.importorskip("datasets")
    splits = {}
    for split, rows in coco_mini_rows(shared_data).items():
        table = {"image": [str(image) for image, _ in rows]}
        table |= {f"caption_{k}": [captions[k] for _, captions in rows] for k in range(5)}
        splits[{"train": "train", "val": "dev"}[split]] = (
            datasets.Dataset.from_dict(table).cast_column("image", datasets.Image()))
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "saved"))
    raw = tmp_path / "raw"
    prepare_source(hf_data(tmp_path / "saved", caption_column=[f"caption_{k}" for k in range(5)]), 0, raw)
    pools, _ = read_imagefolder(raw, "text")
    expected = coco_mini_rows(shared_data)
    assert {split: len(images) for split, images in pools.items()} == {s: len(r) for s, r in expected.items()}
    first_line = json.loads((raw / "val" / "metadata.jsonl").read_text().splitlines()[0])
    assert first_line["text"] == list(expected["val"][0][1][:5])
