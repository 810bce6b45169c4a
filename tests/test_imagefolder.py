"""data.source: imagefolder (the Hugging Face `datasets` layout), read from the real tiny COCO in shared/data."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from captioning.data.imagefolder import read_imagefolder
from captioning.data.subset import build_subsets
from captioning.io import InputError

COCO_SPLITS = {"train": "train2017", "val": "val2017"}


def coco_mini_rows(shared_data: Path) -> dict[str, list[tuple[Path, list[str]]]]:
    """coco_mini per split: (image file, its captions), in the captions file's order."""
    rows = {}
    for split, folder in COCO_SPLITS.items():
        root = shared_data / "coco_mini"
        coco = json.loads((root / "annotations" / f"captions_{folder}.json").read_text())
        captions = defaultdict(list)
        for ann in coco["annotations"]:
            captions[ann["image_id"]].append(ann["caption"])
        rows[split] = [(root / folder / im["file_name"], captions[im["id"]]) for im in coco["images"]]
    return rows


def write_lines(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def write_coco_imagefolder(shared_data: Path, root: Path, layout: str) -> Path:
    """coco_mini as an imagefolder. layout: "per_split" (train/ and validation/, a metadata.jsonl in each),
    "root_metadata" (the same folders, one metadata.jsonl at the root) or "pool" (no split folders: nested
    folders under photos/, one metadata.jsonl at the root)."""
    root_lines = []
    for split, rows in coco_mini_rows(shared_data).items():
        folder = {"train": "train", "val": "validation"}[split] if layout != "pool" else f"photos/{split}"
        lines = []
        for image, captions in rows:
            (root / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, root / folder / image.name)
            lines.append({"file_name": image.name, "text": captions})
            root_lines.append({"file_name": f"{folder}/{image.name}", "text": captions})
        if layout == "per_split":
            write_lines(root / folder / "metadata.jsonl", lines)
    if layout != "per_split":
        write_lines(root / "metadata.jsonl", root_lines)
    return root


def by_name(split: dict) -> dict[str, list[str]]:
    """Image file name (without folders) -> captions of one built split."""
    captions = defaultdict(list)
    for ann in split["annotations"]:
        captions[ann["image_id"]].append(ann["caption"])
    return {Path(im["file_name"]).name: captions[im["id"]] for im in split["images"]}


@pytest.mark.parametrize("layout", ["per_split", "root_metadata"])
def test_split_folders_give_the_splits_with_one_metadata_per_split_or_at_the_root(shared_data, tmp_path, layout):
    root = write_coco_imagefolder(shared_data, tmp_path / layout, layout)
    splits, stats = build_subsets("imagefolder", root, {"train": None, "val": 12, "test": 8}, seed=0)
    rows = coco_mini_rows(shared_data)
    expected = {split: {image.name: [" ".join(c.split()) for c in caps] for image, caps in r}
                for split, r in rows.items()}
    assert by_name(splits["train"]) == expected["train"]                        # train/ is train, whole
    assert {im["file_name"].split("/")[0] for im in splits["train"]["images"]} == {"train"}
    val, test = by_name(splits["val"]), by_name(splits["test"])                   # validation/ is val and test
    assert len(val) == 12 and len(test) == 8 and not val.keys() & test.keys()
    assert {**val, **test} == expected["val"]
    assert stats["train"] == {"images": 40, "captions": 200, "skipped": {}}


def test_both_metadata_placements_read_the_same(shared_data, tmp_path):
    per_split = write_coco_imagefolder(shared_data, tmp_path / "a", "per_split")
    at_root = write_coco_imagefolder(shared_data, tmp_path / "b", "root_metadata")
    sizes = {"train": 30, "val": 10, "test": 10}
    a, _ = build_subsets("imagefolder", per_split, sizes, seed=3)
    b, _ = build_subsets("imagefolder", at_root, sizes, seed=3)
    assert {s: by_name(a[s]) for s in a} == {s: by_name(b[s]) for s in b}


def test_without_split_folders_everything_is_one_pool_split_by_subset(shared_data, tmp_path):
    root = write_coco_imagefolder(shared_data, tmp_path / "pool", "pool")
    splits, stats = build_subsets("imagefolder", root, {"train": 40, "val": 10, "test": 10}, seed=0)
    names = [set(by_name(splits[s])) for s in ("train", "val", "test")]
    assert [len(n) for n in names] == [40, 10, 10] and len(set().union(*names)) == 60    # disjoint, all 60 used
    folders = {im["file_name"].rsplit("/", 1)[0] for s in splits.values() for im in s["images"]}
    assert folders == {"photos/train", "photos/val"}                              # nested folders: no split meaning
    again, _ = build_subsets("imagefolder", root, {"train": 40, "val": 10, "test": 10}, seed=0)
    assert again == splits


def one_image_folder(tmp_path: Path, lines: list[str]) -> Path:
    from PIL import Image
    root = tmp_path / "folder"
    root.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        Image.new("RGB", (8, 8), "red").save(root / name)
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("lines, column, words", [
    (['{"file_name": "a.jpg", "text": "ok"}', '{"file_name": "b.jpg", "text": "ok"', ''], None,
     ["line 2", "not JSON"]),
    (['{"file_name": "a.jpg", "text": "ok"}', '["b.jpg", "ok"]'], None, ["line 2", "not an object"]),
    (['{"file_name": "a.jpg", "text": "ok"}', '', '{"text": "no name"}'], None, ["line 3", "no `file_name`"]),
    (['{"file_name": "a.jpg", "label": 3}'], None, ["line 1", "no caption column", "text, captions, caption",
                                                   "data.caption_column"]),
    (['{"file_name": "a.jpg", "text": "ok"}', '{"file_name": "b.jpg", "caption": "ok"}'], None,
     ["line 2", "no `text`", "chosen from line 1", "null or []"]),
    (['{"file_name": "a.jpg", "text": "ok"}'], "sentences", ["line 1", "no `sentences`", "data.caption_column"]),
    (['{"file_name": "a.jpg", "text": 7}'], None, ["line 1", "`text`", "int", "not a string or a list of strings"]),
    (['{"file_name": "a.jpg", "captions": ["ok", {"raw": "no"}]}'], None,
     ["line 1", "`captions`", "not a string or a list of strings"]),
    (['{"file_name": "../a.jpg", "text": "ok"}'], None, ["entry 1", "outside data.root"]),
])
def test_a_bad_line_names_the_file_the_line_and_the_fault(tmp_path, lines, column, words):
    root = one_image_folder(tmp_path, lines)
    with pytest.raises(InputError) as e:
        read_imagefolder(root, column)
    message = str(e.value)
    assert str(root / "metadata.jsonl") in message
    for word in words:
        assert word in message, message


def test_caption_columns_found_by_name_or_set(tmp_path):
    root = one_image_folder(tmp_path, ['{"file_name": "a.jpg", "caption": "a red square", "captions": "not me"}',
                                       '{"file_name": "b.jpg", "caption": "b", "captions": ["x"]}'])
    pools, _ = read_imagefolder(root)                        # captions before caption: auto takes `captions`
    assert {im["file_name"]: im["captions"] for im in pools["train"]}["a.jpg"] == ["not me"]
    pools, _ = read_imagefolder(root, "caption")
    assert {im["file_name"]: im["captions"] for im in pools["train"]}["b.jpg"] == ["b"]


def test_orphans_and_uncaptioned_images_are_counted_in_the_filter_metrics(tmp_path):
    """Through the download and filter stages: nothing fatal, each gap counted in metrics/data.json."""
    root = one_image_folder(tmp_path, [
        '{"file_name": "a.jpg", "text": ["a red square", "  "]}',  # one empty caption
        '{"file_name": "b.jpg", "text": null}',                     # listed without captions
        '{"file_name": "gone.jpg", "text": "no such file"}',        # listed, not on disk
        '{"file_name": "gone2.jpg", "text": []}',                    # listed without captions and not on disk
    ])                                                               # c.jpg: on disk, no metadata line
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="imagefolder", root=str(root))
    params["subset"] = {"train": 1, "val": None, "test": None}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for cmd in (["download.py", "--out", "raw"],
                ["filter.py", "--raw", "raw", "--out", "subset", "--metrics", "data.json"]):
        out = subprocess.run([sys.executable, str(ROOT / "stages" / cmd[0]), *cmd[1:], "--params", "params.yaml"],
                             cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "data.json").read_text())
    assert metrics["train"]["skipped"] == {"no metadata line": 1, "empty caption": 1, "no caption": 2,
                                           "missing file": 1}
    assert metrics["train"]["images"] == 1 and metrics["train"]["captions"] == 1
    assert json.loads((tmp_path / "raw" / "source.json").read_text())["metadata_sha256"]


def test_a_bad_line_stops_the_download_stage_with_the_line(tmp_path):
    root = one_image_folder(tmp_path, ['{"file_name": "a.jpg", "text": "ok"}', "{oops"])
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="imagefolder", root=str(root))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = subprocess.run([sys.executable, str(ROOT / "stages" / "download.py"), "--out", "raw", "--params",
                          "params.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 2 and "metadata.jsonl, line 2: not JSON" in out.stderr, out.stderr


def test_images_outside_the_split_folders_are_counted_not_read(shared_data, tmp_path):
    root = write_coco_imagefolder(shared_data, tmp_path / "f", "per_split")
    shutil.copy(next((root / "train").glob("*.jpg")), root / "stray.jpg")
    (root / "test").mkdir()                                   # an empty test/ folder is a split with no image
    pools, skipped = read_imagefolder(root)
    assert sorted(pools) == ["test", "train", "val"] and pools["test"] == []
    assert skipped["train"] == {"outside the split folders": 1}
    with pytest.raises(InputError, match="subset.test = 5 but imagefolder test has only 0 usable images"):
        build_subsets("imagefolder", root, {"train": 5, "val": 5, "test": 5}, seed=0)
