import json
import multiprocessing
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import ROOT
from PIL import Image

from captioning.data import images as images_module
from captioning.data.images import BadImage, check_skips, load_rgb, resize_image, resize_split
from captioning.io import InputError


@pytest.fixture
def odd_images(tmp_path):
    """Real files of every awkward kind a dataset can hold."""
    base = Image.new("RGB", (40, 30), (200, 30, 30))
    paths = {}
    paths["rgb"] = tmp_path / "rgb.jpg"
    base.save(paths["rgb"])
    paths["cmyk"] = tmp_path / "cmyk.jpg"
    base.convert("CMYK").save(paths["cmyk"])
    paths["palette"] = tmp_path / "palette.png"
    base.convert("P").save(paths["palette"])
    rgba = base.convert("RGBA")
    rgba.putalpha(0)
    paths["alpha"] = tmp_path / "alpha.png"
    rgba.save(paths["alpha"])
    paths["gray16"] = tmp_path / "gray16.png"
    Image.fromarray((np.arange(1200).reshape(30, 40) * 50).astype(np.uint16)).save(paths["gray16"])
    paths["zero"] = tmp_path / "zero.jpg"
    paths["zero"].write_bytes(b"")
    paths["text"] = tmp_path / "text.jpg"
    paths["text"].write_text("not an image at all")
    data = paths["rgb"].read_bytes()
    paths["truncated"] = tmp_path / "truncated.jpg"
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["missing"] = tmp_path / "missing.jpg"
    return paths


@pytest.mark.parametrize("kind", ["rgb", "cmyk", "palette", "alpha", "gray16"])
def test_every_mode_becomes_rgb(odd_images, kind):
    image = load_rgb(odd_images[kind])
    assert image.mode == "RGB" and image.size == (40, 30)
    if kind == "alpha":   # fully transparent: composited on white, not black
        assert image.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("kind, reason", [("zero", "empty"), ("text", "not an image"), ("truncated", "truncated"),
                                          ("missing", "missing")])
def test_bad_images_raise_with_reason(odd_images, kind, reason):
    with pytest.raises(BadImage, match=reason):
        load_rgb(odd_images[kind])


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (200, 200)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)   # 40,000 pixels is then a "bomb"
    with pytest.raises(BadImage, match="decompression-bomb"):
        load_rgb(path)


@pytest.mark.parametrize("mode", ["squash", "crop"])
def test_resize_modes_give_square_images(mode):
    image = Image.new("RGB", (300, 100))
    assert resize_image(image, 64, mode).size == (64, 64)


def test_resize_split_skips_and_counts_bad_images_and_does_the_rest(odd_images, tmp_path):
    images = [{"id": i, "path": str(p)} for i, p in enumerate(odd_images.values())]
    report = resize_split(images, tmp_path / "out", 32, "squash", workers=2)
    assert report["written"] == 5 and report["skipped"] == 4
    assert {s["path"].rsplit("/", 1)[1] for s in report["skipped_images"]} == {"zero.jpg", "text.jpg", "truncated.jpg",
                                                                               "missing.jpg"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    single = resize_split(images, tmp_path / "out1", 32, "squash", workers=1)
    assert [s["reason"] for s in single["skipped_images"]] == [s["reason"] for s in report["skipped_images"]]


def test_grayscale_coco_image_comes_out_rgb(shared_data, tmp_path):
    path = shared_data / "coco_mini" / "val2017" / "000000431848.jpg"
    assert Image.open(path).mode == "L"
    report = resize_split([{"id": 431848, "path": str(path)}], tmp_path, 64, "crop", workers=1)
    assert report["written"] == 1
    with Image.open(tmp_path / "431848.jpg") as out:
        assert out.mode == "RGB" and out.size == (64, 64)


def _sources(folder, good: int, bad: int) -> list[dict]:
    """COCO image entries for `good` small JPEGs and `bad` files that are not images."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(good + bad):
        path = folder / f"{i}.jpg"
        if i < good:
            Image.new("RGB", (48, 32), (i * 10 % 256, 90, 160)).save(path)
        else:
            path.write_text("an HTML error page saved as a JPEG")
        entries.append({"id": i, "file_name": path.name, "path": str(path)})
    return entries


def _resize_stage_inputs(tmp_path, test_good: int, test_bad: int) -> None:
    """Good train/val splits and a test split with `test_bad` unreadable images, as filter leaves them."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "source.json").write_text(json.dumps({"images": "full"}))
    (tmp_path / "subset").mkdir()
    for split, (good, bad) in {"train": (3, 0), "val": (2, 0), "test": (test_good, test_bad)}.items():
        entries = _sources(tmp_path / "raw" / split, good, bad)
        (tmp_path / "subset" / f"{split}.json").write_text(json.dumps({"images": entries, "annotations": []}))


def _run_resize_stage(tmp_path, **resize) -> subprocess.CompletedProcess:
    params = {"resize": {"image_size": 32, "workers": 1, **resize}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run([sys.executable, str(ROOT / "stages" / "resize.py"), "--subset", "subset", "--raw", "raw",
                           "--out", "images", "--metrics", "resize.json", "--params", "params.yaml"],
                          cwd=tmp_path, capture_output=True, text=True)


def test_resize_stage_refuses_a_split_left_without_images_and_names_the_report(tmp_path):
    _resize_stage_inputs(tmp_path, test_good=0, test_bad=3)
    run = _run_resize_stage(tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "test: 3 of 3 images skipped (100.0%), no image left" in run.stderr
    assert "images/report.json lists each skipped image" in run.stderr
    assert "Traceback" not in run.stderr
    report = json.loads((tmp_path / "images" / "report.json").read_text())
    assert [s["image_id"] for s in report["test"]["skipped_images"]] == [0, 1, 2]


def test_resize_stage_passes_one_bad_image_among_many_and_counts_it(tmp_path):
    _resize_stage_inputs(tmp_path, test_good=20, test_bad=1)             # 4.8%, under the default 5%
    run = _run_resize_stage(tmp_path)
    assert run.returncode == 0, run.stderr
    counts = json.loads((tmp_path / "resize.json").read_text())
    assert counts["test"] == {"written": 20, "skipped": 1}
    assert len(list((tmp_path / "images" / "test").glob("*.jpg"))) == 20


def test_resize_stage_fails_a_split_whose_skipped_share_is_above_the_limit(tmp_path):
    _resize_stage_inputs(tmp_path, test_good=19, test_bad=2)             # 9.5%
    run = _run_resize_stage(tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "test: 2 of 21 images skipped (9.5%), above the limit resize.max_skipped = 0.05" in run.stderr
    assert "images/report.json" in run.stderr and "dvc exp run -S resize.max_skipped=0.1" in run.stderr
    assert "train" not in run.stderr.split("error:", 1)[1]
    assert _run_resize_stage(tmp_path, max_skipped=0.1).returncode == 0      # the suggested limit lets it go on


def _resized_files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _platform_without_fork(method=None):
    """multiprocessing.get_context as on Windows: no fork, spawn by default."""
    if method == "fork":
        raise ValueError("cannot find context for 'fork'")
    return multiprocessing.get_context(method or "spawn")


@pytest.mark.parametrize("platform", ["this one", "without fork"])
def test_two_workers_write_the_same_files_as_one(tmp_path, monkeypatch, platform):
    if platform == "without fork":
        monkeypatch.setattr(images_module, "get_context", _platform_without_fork)
    images = _sources(tmp_path / "raw", good=6, bad=1)
    one = resize_split(images, tmp_path / "one", 32, "crop", workers=1)
    two = resize_split(images, tmp_path / "two", 32, "crop", workers=2)
    assert one == two
    assert two["written"] == 6 and two["skipped"] == 1
    assert _resized_files(tmp_path / "one") == _resized_files(tmp_path / "two")


def test_offline_per_image_download_is_named_and_an_empty_subset_is_allowed():
    offline = {"written": 0, "skipped": 2, "skipped_images": [],
               "fetch": {"failed": 2, "failed_images": [{"reason": "no network: Name or service not known"}]}}
    no_test_split = {"written": 0, "skipped": 0, "skipped_images": []}      # subset.test: 0 chose none
    with pytest.raises(InputError, match=r"val: 2 of 2 images skipped.*2 could not be downloaded \(first: no network"):
        check_skips({"val": offline, "test": no_test_split}, 0.05, "data/images/report.json")
    check_skips({"test": no_test_split}, 0.05, "data/images/report.json")
