import hashlib
import random

import numpy as np

from captioning.data.coco import load_captions
from captioning.data.synthetic import COLOURS, SIZES, captions, draw, generate_synthetic, random_scene


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    generate_synthetic(tmp_path / "a", 12, 6, 64, seed=3)
    generate_synthetic(tmp_path / "b", 12, 6, 64, seed=3)
    generate_synthetic(tmp_path / "c", 12, 6, 64, seed=4)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_coco_layout_with_five_distinct_captions_each(tmp_path):
    generate_synthetic(tmp_path, 10, 5, 64, seed=0)
    for split, n in (("train", 10), ("val", 5)):
        coco = load_captions(tmp_path / "annotations" / f"captions_{split}2017.json")
        assert len(coco["images"]) == n
        for image in coco["images"]:
            assert (tmp_path / f"{split}2017" / image["file_name"]).exists()
            caps = [a["caption"] for a in coco["annotations"] if a["image_id"] == image["id"]]
            assert len(caps) == 5 and len(set(caps)) == 5


def test_captions_name_the_colours_that_are_drawn():
    rng = random.Random(1)
    for _ in range(30):
        scene = random_scene(rng)
        image = np.asarray(draw(scene, 128)).astype(int)
        for item in scene.items:
            centre = image[int(item.y * 128), int(item.x * 128) + (0 if item.shape != "triangle" else 0)]
            if item.shape == "triangle":
                centre = image[int(item.y * 128 + SIZES[item.size] * 128 * 0.4), int(item.x * 128)]
            assert np.abs(centre - np.array(COLOURS[item.colour])).max() < 10
        for caption in captions(scene):
            named = {w for w in caption.split() if w in COLOURS}
            assert named == {item.colour for item in scene.items}, caption
