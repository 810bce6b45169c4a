import numpy as np
import pytest
from PIL import Image

from captioning.data.images import BadImage, load_rgb, resize_image, resize_split


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
