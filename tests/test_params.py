import subprocess
import sys

import pytest
import yaml

from captioning.io import InputError
from captioning.params import load_params, parse_params
from conftest import ROOT


def test_project_params_yaml_is_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.data.source == "synthetic" and p.train.decoder == "show_tell"


@pytest.mark.parametrize("raw, words", [
    ({"data": {"source": "imagenet"}}, ["data.source", "imagenet", "synthetic", "coco2017"]),
    ({"train": {"epochs": -1}}, ["train.epochs", "-1", "greater than or equal to 1"]),
    ({"features": {"encoder": "vgg16"}}, ["features.encoder", "vgg16", "efficientnet_lite0"]),
    ({"train": {"epoch": 3}}, ["train.epoch", "unknown key"]),
    ({"train": {"lr": "fast"}}, ["train.lr", "fast"]),
])
def test_bad_values_name_key_value_and_allowed(raw, words):
    with pytest.raises(InputError) as e:
        parse_params(raw)
    for w in words:
        assert w in str(e.value)


def test_stage_stops_before_work_on_bad_params(tmp_path):
    bad = yaml.safe_load((ROOT / "params.yaml").read_text())
    bad["train"]["epochs"] = -2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    out = subprocess.run([sys.executable, str(ROOT / "stages" / "vocab.py"), "--params", str(tmp_path / "params.yaml"),
                          "--subset", str(tmp_path / "nothing"), "--out", str(tmp_path / "v.json"),
                          "--metrics", str(tmp_path / "m.json")], capture_output=True, text=True)
    assert out.returncode == 2
    assert "train.epochs" in out.stderr and "-2" in out.stderr
    assert not (tmp_path / "v.json").exists()


def test_every_stage_has_help():
    for stage in sorted((ROOT / "stages").glob("*.py")):
        out = subprocess.run([sys.executable, str(stage), "--help"], capture_output=True, text=True)
        assert out.returncode == 0, (stage, out.stderr)
        assert "--params" in out.stdout or "--out" in out.stdout, stage
