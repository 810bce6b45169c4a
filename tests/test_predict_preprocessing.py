"""`caption predict` prepares a photo as the pipeline prepared the images the model learnt from: the resize
stage's `resize.mode` and `resize.image_size` (recorded in the model's config.json), then the encoder's own
preprocessing. A model folder that records none (written before the record existed) still loads, and its
photos go to the encoder as before."""
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from dvc_project import create_project, run
from PIL import Image, ImageDraw

from captioning.data.coco import write_captions
from captioning.data.images import resize_image
from captioning.io import InputError
from captioning.models.artifact import CaptionModel, resize_record, save_model
from captioning.models.decoders import DecoderConfig, build_decoder
from captioning.predict import Captioner
from captioning.text.vocabulary import build_vocabulary

SIDE = 96
RED, BLUE, GREEN, WHITE = (220, 30, 30), (40, 70, 220), (30, 170, 50), (250, 250, 250)


def save_random_model(folder: Path, preprocessing: dict) -> Path:
    torch.manual_seed(0)
    vocab, _ = build_vocabulary(["a green circle", "a red square"], 1, 8)
    decoder = build_decoder("show_tell", DecoderConfig(len(vocab), 1280, 1280, 16, 32, 1, 0.0))
    encoder = {"name": "efficientnet_lite0", "weights": "imagenet", "pooled_dim": 1280, "grid_shape": [7, 7, 1280]}
    save_model(CaptionModel("show_tell", decoder, vocab, encoder, {}, preprocessing), folder)
    return folder


def panelled_photo() -> Image.Image:
    """3:1: a red panel, a green circle on white in the middle square, a blue panel."""
    photo = Image.new("RGB", (3 * SIDE, SIDE), WHITE)
    pen = ImageDraw.Draw(photo)
    pen.rectangle((0, 0, SIDE - 1, SIDE - 1), fill=RED)
    pen.rectangle((2 * SIDE, 0, 3 * SIDE - 1, SIDE - 1), fill=BLUE)
    pen.ellipse((SIDE + 16, 16, 2 * SIDE - 16, SIDE - 16), fill=GREEN)
    return photo


class InputSpy(torch.nn.Module):
    """The captioner's encoder, keeping each batch it is given."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder, self.seen = encoder, []

    def forward(self, images: torch.Tensor):
        self.seen.append(images.detach().clone())
        return self.encoder(images)


def encoder_input(captioner: Captioner, photo) -> torch.Tensor:
    """What the encoder receives when `photo` is captioned."""
    captioner.encoder = spy = InputSpy(captioner.encoder)
    captioner(photo, beam_size=1, max_length=3)
    captioner.encoder = spy.encoder
    return spy.seen[0][0]


def left_edge_redness(captioner: Captioner, pixels: torch.Tensor) -> float:
    """Red minus green in the leftmost column, in [0, 1] colour units (the red panel: about 0.75)."""
    spec = captioner.spec
    rgb = pixels * torch.tensor(spec.std).view(3, 1, 1) + torch.tensor(spec.mean).view(3, 1, 1)
    return float((rgb[0, :, 0] - rgb[1, :, 0]).mean())


@pytest.mark.parametrize("mode, panels_seen", [("crop", False), ("squash", True)])
def test_the_recorded_resize_is_what_the_encoder_sees(tmp_path, mode, panels_seen):
    model = save_random_model(tmp_path / "m", resize_record(64, mode))
    assert json.loads((model / "config.json").read_text())["preprocessing"] == {
        "resize": {"image_size": 64, "mode": mode}}
    photo = panelled_photo()
    photo.save(tmp_path / "photo.png")
    captioner = Captioner.load(model, "cpu")
    seen = encoder_input(captioner, tmp_path / "photo.png")
    expected = captioner.spec.preprocess(resize_image(photo, 64, mode))   # what the features stage computes
    torch.testing.assert_close(seen, expected)
    torch.testing.assert_close(encoder_input(captioner, photo), expected)   # a PIL image: the same
    assert (left_edge_redness(captioner, seen) > 0.5) == panels_seen


def test_a_model_folder_without_the_record_loads_and_squashes_photos_straight_to_the_encoder(tmp_path):
    model = save_random_model(tmp_path / "m", {})
    config = json.loads((model / "config.json").read_text())
    assert "preprocessing" not in config
    captioner = Captioner.load(model, "cpu")
    photo = panelled_photo()
    seen = encoder_input(captioner, photo)
    size = captioner.spec.input_size
    torch.testing.assert_close(seen, captioner.spec.preprocess(photo.resize((size, size), Image.BICUBIC)))
    assert isinstance(captioner(photo), str)


def test_an_unreadable_record_is_named(tmp_path):
    model = save_random_model(tmp_path / "m", {"resize": {"image_size": 64, "mode": "stretch"}})
    with pytest.raises(InputError, match=r"preprocessing\.resize.*'stretch'.*squash or crop"):
        Captioner.load(model, "cpu")


# --- the pipeline's own model, decode stage against `caption predict` ---------------------------------------------

SHAPES = ("circle", "square")
COLOURS = {"red": RED, "green": GREEN, "blue": BLUE, "yellow": (240, 210, 20), "purple": (140, 50, 170),
           "orange": (245, 130, 20)}


def wide_photo(rng: random.Random) -> tuple[Image.Image, list[str]]:
    """3:1: a coloured shape in the middle square, which the captions name, between two panels of other
    colours, which they do not (a centre crop removes them; squashing keeps two thirds of the photo for them)."""
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    photo = Image.new("RGB", (3 * SIDE, SIDE), WHITE)
    pen = ImageDraw.Draw(photo)
    left, right = rng.sample([c for c in COLOURS if c != colour], 2)
    pen.rectangle((0, 0, SIDE - 1, SIDE - 1), fill=COLOURS[left])
    pen.rectangle((2 * SIDE, 0, 3 * SIDE - 1, SIDE - 1), fill=COLOURS[right])
    (pen.ellipse if shape == "circle" else pen.rectangle)((SIDE + 12, 12, 2 * SIDE - 12, SIDE - 12),
                                                          fill=COLOURS[colour])
    words = f"{colour} {shape}"
    return photo, [f"a {words}", f"one {words}", f"a big {words}", f"there is a {words}", f"a {words} in the middle"]


def named_content(caption: str) -> tuple[str, ...]:
    """The colour and shape words of a caption of `wide_photo`'s, in order."""
    return tuple(word for word in caption.split() if word in COLOURS or word in SHAPES)


def write_wide_photos(folder: Path, count: int) -> Path:
    """A `folder` dataset (data.source): <id>.jpg and captions.json."""
    rng = random.Random(0)
    images, annotations = [], []
    for image_id in range(1, count + 1):
        photo, texts = wide_photo(rng)
        photo.save(folder / f"{image_id}.jpg", quality=95)
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 3 * SIDE, "height": SIDE})
        annotations += [{"id": len(annotations) + 1, "image_id": image_id, "caption": t} for t in texts]
    write_captions(folder / "captions.json", images, annotations)
    return folder


@pytest.fixture(scope="module")
def cropped_project(tmp_path_factory) -> Path:
    """Wide photos centre-cropped by the resize stage; a small decoder trained until its captions name the
    shape and colour it sees; the pipeline up to the decode stage."""
    photos = write_wide_photos(tmp_path_factory.mktemp("photos"), 100)
    project = create_project(tmp_path_factory.mktemp("cropped"), {
        "data": {"source": "folder", "root": str(photos)},
        "subset": {"train": 70, "val": 10, "test": 20},
        "resize": {"image_size": SIDE, "mode": "crop"},
        "vocab": {"threshold": 1},
        "train": {"epochs": 60, "lr": 0.01, "batch_size": 16, "embed_dim": 64, "hidden_dim": 128, "dropout": 0.0,
                  "select": "loss"},
        "decode": {"beam_size": 3, "max_length": 20, "length_penalty": 0.0},
    })
    run(["dvc", "repro", "decode"], project)
    return project


@pytest.mark.slow
def test_predict_on_the_original_photos_gives_the_decode_stages_captions(cropped_project):
    """The decode stage captions the resize stage's JPEGs (cropped, then re-encoded at quality 90) from features
    cached in float16, computed by a traced encoder; predict crops the original photo in memory and computes
    its features in float32. Both must name the colour and shape in the photo's centre. The words around them
    are a coin toss by design ("a", "one", "a big" are equally likely), so tiny feature differences may change
    them (3 of 20 on a float32-trained model); a predict that squashed the whole photo instead named another
    colour or shape in 16 of 20."""
    project = cropped_project
    config = json.loads((project / "models" / "config.json").read_text())
    assert config["preprocessing"] == {"resize": {"image_size": SIDE, "mode": "crop"}}
    test_images = json.loads((project / "data" / "subset" / "test.json").read_text())["images"]
    run([sys.executable, "-m", "captioning.cli", "predict", *[image["path"] for image in test_images],
         "--model", "models", "--beam-size", "3", "--max-length", "20", "--length-penalty", "0",
         "--out", "mine.json"], project)
    mine = {row["image_id"]: row["caption"] for row in json.loads((project / "mine.json").read_text())}
    pipeline = {row["image_id"]: row["caption"]
                for row in json.loads((project / "data" / "predictions.json").read_text())}
    assert set(mine) == set(pipeline) == {image["id"] for image in test_images}
    assert len(set(pipeline.values())) >= 4, f"too few different captions to tell anything: {pipeline}"
    differing = {i: (pipeline[i], mine[i]) for i in pipeline if named_content(mine[i]) != named_content(pipeline[i])}
    assert len(differing) <= 1, f"{len(differing)} of {len(pipeline)} name another colour or shape " \
                                f"(decode stage, predict): {differing}"


def test_wide_photos_hold_the_captioned_shape_only_in_their_centre():
    """The dataset above is only a test of preprocessing if cropping and squashing give different images."""
    photo, captions = wide_photo(random.Random(1))
    colour = captions[0].split()[1]
    centre = np.asarray(resize_image(photo, SIDE, "crop"))
    squashed = np.asarray(resize_image(photo, SIDE, "squash"))
    assert tuple(centre[SIDE // 2, SIDE // 2]) == COLOURS[colour]
    assert tuple(centre[5, 5]) == WHITE and tuple(squashed[5, 5]) != WHITE
