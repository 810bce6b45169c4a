"""The offline default dataset: scenes of one to three coloured shapes, five paraphrases each.

Deterministic from the seed and written in MS COCO 2017 captions layout (train2017/, val2017/,
annotations/captions_*2017.json), so every later stage treats it exactly like COCO. The captions
describe what is drawn (count, colours, shapes, sizes, left-to-right order, background), so the task
is learnable from the pixels and not from the text alone.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from captioning.data.coco import write_captions
from captioning.io import atomic_path

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 50), "blue": (40, 70, 220),
           "yellow": (240, 210, 20), "purple": (140, 50, 170), "orange": (245, 130, 20)}
BACKGROUNDS = {"white": (250, 250, 250), "black": (10, 10, 10), "gray": (128, 128, 128)}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = {"small": 0.10, "large": 0.17}      # radius as a share of the image side
NUMBERS = {1: "one", 2: "two", 3: "three"}


@dataclass(frozen=True)
class Item:
    shape: str
    colour: str
    size: str
    x: float   # centre, as a share of the side
    y: float

    def phrase(self, with_size: bool = True) -> str:
        words = f"{self.size} {self.colour} {self.shape}" if with_size else f"{self.colour} {self.shape}"
        return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


@dataclass(frozen=True)
class Scene:
    items: tuple[Item, ...]    # left to right
    background: str


def random_scene(rng: random.Random) -> Scene:
    count = rng.choice((1, 1, 2, 2, 3))
    slots = sorted(rng.sample((0.2, 0.5, 0.8), count)) if count > 1 else [rng.choice((0.25, 0.5, 0.75))]
    items = tuple(Item(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES)),
                       x + rng.uniform(-0.04, 0.04), rng.uniform(0.3, 0.7)) for x in slots)
    return Scene(items, rng.choice(list(BACKGROUNDS)))


def _position(x: float) -> str:
    return "on the left" if x < 0.4 else "on the right" if x > 0.6 else "in the middle"


def captions(scene: Scene) -> list[str]:
    """Five different paraphrases, in the styles people write."""
    it, bg = scene.items, scene.background
    if len(it) == 1:
        a = it[0]
        return [f"{a.phrase()} on a {bg} background",
                f"{a.phrase(False)} {_position(a.x)} of the picture",
                f"there is {a.phrase()} {_position(a.x)}",
                f"a {bg} picture with {a.phrase()}",
                f"one {a.size} {a.colour} {a.shape} on {bg}"]
    if len(it) == 2:
        a, b = it
        return [f"{a.phrase()} to the left of {b.phrase()}",
                f"{a.phrase(False)} and {b.phrase(False)} on a {bg} background",
                f"there is {b.phrase()} to the right of {a.phrase()}",
                f"two shapes {a.phrase()} and {b.phrase()}",
                f"a {bg} picture with {a.phrase(False)} on the left and {b.phrase(False)} on the right"]
    a, b, c = it
    return [f"{a.phrase()} {b.phrase()} and {c.phrase()}",
            f"three shapes on a {bg} background {a.phrase(False)} {b.phrase(False)} and {c.phrase(False)}",
            f"{b.phrase()} between {a.phrase()} and {c.phrase()}",
            f"{a.phrase(False)} on the left {b.phrase(False)} in the middle and {c.phrase(False)} on the right",
            f"there are three shapes {a.phrase()} {b.phrase()} and {c.phrase()}"]


def draw(scene: Scene, size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), BACKGROUNDS[scene.background])
    pen = ImageDraw.Draw(image)
    for item in scene.items:
        r, cx, cy, fill = SIZES[item.size] * size, item.x * size, item.y * size, COLOURS[item.colour]
        if item.shape == "circle":
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif item.shape == "square":
            s = r * 0.9
            pen.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
        elif item.shape == "triangle":
            pen.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=fill)
        else:
            pen.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    return image


def _write_split(out_dir: Path, split: str, first_id: int, count: int, size: int, rng: random.Random) -> list[Scene]:
    folder = out_dir / f"{split}2017"
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations, scenes = [], [], []
    for image_id in range(first_id, first_id + count):
        scene = random_scene(rng)
        name = f"{image_id:012d}.jpg"
        with atomic_path(folder / name, ".jpg") as tmp:
            draw(scene, size).save(tmp, format="JPEG", quality=90)
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
        for caption in captions(scene):
            annotations.append({"id": len(annotations) + first_id * 10, "image_id": image_id, "caption": caption})
        scenes.append(scene)
    write_captions(out_dir / "annotations" / f"captions_{split}2017.json", images, annotations,
                   {"description": "synthetic shapes (captioning offline default dataset)", "version": "1"})
    return scenes


def generate_synthetic(out_dir: str | Path, n_train: int, n_val: int, size: int, seed: int) -> dict:
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    _write_split(out_dir, "train", 1, n_train, size, rng)
    _write_split(out_dir, "val", n_train + 1, n_val, size, rng)
    return {"train_images": n_train, "val_images": n_val, "captions_per_image": 5, "size": size}
