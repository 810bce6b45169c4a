"""The `caption predict` command on real photos, with small random-weight models saved as real artifacts."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from captioning.models.artifact import CaptionModel, save_model
from captioning.models.decoders import DecoderConfig, build_decoder
from captioning.text.vocabulary import build_vocabulary

CAPTION = [sys.executable, "-m", "captioning.cli"]


def make_model(folder, decoder_name, weights="none"):
    """A random decoder; `weights: none` also draws the encoder at random when the model is loaded (each
    process differently), `imagenet` gives every load the same encoder."""
    torch.manual_seed(0)
    vocab, _ = build_vocabulary(["a dog on the grass", "a cat on a sofa", "a man riding a horse"], 1, 12)
    decoder = build_decoder(decoder_name, DecoderConfig(len(vocab), 1280, 1280, 16, 32, 1, 0.0))
    encoder = {"name": "efficientnet_lite0", "weights": weights, "pooled_dim": 1280, "grid_shape": [7, 7, 1280]}
    save_model(CaptionModel(decoder_name, decoder, vocab, encoder, {}), folder)
    return folder


def run(*args):
    return subprocess.run([*CAPTION, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from conftest import SHARED_DATA

    folder = SHARED_DATA / "coco_mini" / "val2017"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return folder


def test_predict_folder_writes_coco_results(photos, tmp_path):
    model = make_model(tmp_path / "m", "show_tell")
    (tmp_path / "odd").mkdir()
    shutil.copy(photos / "000000431848.jpg", tmp_path / "odd" / "gray.jpg")            # grayscale
    Image.open(photos / "000000431848.jpg").convert("RGBA").save(tmp_path / "odd" / "alpha.png")
    (tmp_path / "odd" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    out = run("predict", photos, tmp_path / "odd", "--model", model, "--out", tmp_path / "p.json", "--beam-size", "2")
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "p.json").read_text())
    assert len(results) == 22 and all(isinstance(r["caption"], str) for r in results)
    assert {r["image_id"] for r in results if "image_id" in r} >= {431848, 139}
    assert sorted(r["file_name"] for r in results if "image_id" not in r) == ["alpha.png", "gray.jpg"]
    assert "2 of 22 rows have a file_name but no image_id" in out.stderr and "need integer image_ids" in out.stderr
    assert "broken.jpg\t(skipped:" in out.stdout and "1 of 23 images skipped" in out.stderr


@pytest.mark.parametrize("name, image_id", [("COCO_val2014_000000391895.jpg", 391895), ("000000391895.jpg", 391895),
                                            ("391895.png", 391895), ("COCO_train2014_000000000009.jpg", 9),
                                            ("IMG_1234.jpg", None), ("1000268201_693b08cb0e.jpg", None),
                                            ("holiday.jpg", None)])
def test_coco_image_ids_come_from_coco_file_names_only(name, image_id):
    from captioning.predict import coco_image_id

    assert coco_image_id(Path(name)) == image_id


def test_predict_out_loads_with_coco_load_res(photos, tmp_path):
    from pycocotools.coco import COCO

    from captioning.data.coco import write_captions

    folder = tmp_path / "coco"
    folder.mkdir()
    names = {"COCO_val2014_000000391895.jpg": 391895, "000000431848.jpg": 431848, "42.jpg": 42}
    for name in names:
        shutil.copy(photos / "000000431848.jpg", folder / name)
    out = run("predict", folder, "--model", make_model(tmp_path / "m", "show_tell"), "--out", tmp_path / "p.json")
    assert out.returncode == 0, out.stderr
    assert "image_id" not in out.stderr                                       # no rows without an id
    rows = json.loads((tmp_path / "p.json").read_text())
    assert all(set(r) == {"image_id", "caption"} for r in rows)
    write_captions(tmp_path / "refs.json", [{"id": i, "file_name": n} for n, i in names.items()] +
                   [{"id": 1, "file_name": "1.jpg"}], [{"id": 1, "image_id": 42, "caption": "a cat"}])
    coco = COCO(str(tmp_path / "refs.json"))
    results = coco.loadRes(str(tmp_path / "p.json"))
    assert sorted(results.getImgIds()) == [42, 391895, 431848]
    written = {r["image_id"]: r["caption"] for r in rows}
    assert {i: results.imgToAnns[i][0]["caption"] for i in names.values()} == written


def test_attention_maps_for_an_attention_model(photos, tmp_path):
    model = make_model(tmp_path / "m", "soft_attention")
    out = run("predict", photos / "000000431848.jpg", "--model", model, "--attention-maps", tmp_path / "maps")
    assert out.returncode == 0, out.stderr
    with Image.open(tmp_path / "maps" / "000000431848.png") as figure:
        assert figure.size[0] > 300


def test_attention_maps_refused_for_a_model_without_attention(photos, tmp_path):
    out = run("predict", photos, "--model", make_model(tmp_path / "m", "show_tell"), "--attention-maps",
              tmp_path / "maps")
    assert out.returncode == 2 and "has no attention" in out.stderr


def test_missing_or_mismatched_model_is_a_clear_error(photos, tmp_path):
    out = run("predict", photos, "--model", tmp_path / "nothing")
    assert out.returncode == 2 and "model.safetensors: missing" in out.stderr
    model = make_model(tmp_path / "m", "show_tell")
    other = make_model(tmp_path / "o", "show_tell")
    vocab = json.loads((other / "vocab.json").read_text())
    vocab["words"] = vocab["words"][:-1]
    vocab.pop("digest")
    (model / "vocab.json").write_text(json.dumps(vocab))
    out = run("predict", photos, "--model", model)
    assert out.returncode == 2 and "does not belong to this model" in out.stderr



def test_python_api_takes_a_path_a_pil_image_or_a_list(photos, tmp_path):
    from captioning import Captioner

    captioner = Captioner.load(make_model(tmp_path / "m", "show_tell", "imagenet"))
    path = photos / "000000431848.jpg"
    caption = captioner(path)
    assert isinstance(caption, str) and caption
    assert captioner(str(path)) == caption == captioner(Image.open(path))     # a PIL image gives the same
    several = sorted(photos.glob("*.jpg"))[:3]
    assert captioner(several) == [captioner(p) for p in several]
    detailed = captioner(Image.open(path), attention=True)
    assert detailed.caption == caption and detailed.path is None
    attending = Captioner.load(make_model(tmp_path / "a", "soft_attention"))(path, attention=True, max_length=5)
    assert attending.attention.shape == (len(attending.words), 49)           # one 7x7 map per word


def test_decoding_defaults_to_the_settings_the_model_was_evaluated_with(photos, tmp_path):
    model = make_model(tmp_path / "m", "show_tell", "imagenet")
    default = run("predict", photos, "--model", model, "--json")
    assert default.returncode == 0, default.stderr
    assert "caption: 100%" in default.stderr                                   # a progress bar on stderr
    longest = max(len(r["caption"].split()) for r in json.loads(default.stdout))
    assert longest > 2
    (model / "decoding.json").write_text(json.dumps({"beam_size": 1, "max_length": 2, "length_penalty": 0.0}))
    evaluated = json.loads(run("predict", photos, "--model", model, "--json").stdout)
    assert max(len(r["caption"].split()) for r in evaluated) <= 2
    options = ["--beam-size", "3", "--max-length", "20"]                     # options still override it
    assert json.loads(run("predict", photos, "--model", model, "--json", *options).stdout) == json.loads(default.stdout)
