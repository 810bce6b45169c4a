import copy
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from captioning.io import InputError
from captioning.params import load_params, parse_params


def test_project_params_yaml_is_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.data.source == "synthetic" and p.train.decoder == "show_tell"


def test_params_yaml_lists_every_parameter_so_dvc_can_set_it():
    """`dvc exp run -S train.x=1` fails for a key missing from params.yaml ("not in struct")."""
    written = {".".join(path) for path, _ in _leaves(yaml.safe_load((ROOT / "params.yaml").read_text()))}
    known = {".".join(path) for path, _ in _leaves(parse_params({}).model_dump())}
    assert known - written == set()


@pytest.mark.parametrize("raw, words", [
    ({"data": {"source": "imagenet"}}, ["data.source", "imagenet", "synthetic", "coco2017"]),
    ({"train": {"epochs": -1}}, ["train.epochs", "-1", "greater than or equal to 1"]),
    ({"features": {"encoder": "vgg16"}}, ["features.encoder", "vgg16", "efficientnet_lite0"]),
    ({"train": {"epoch": 3}}, ["train.epoch", "unknown key"]),
    ({"train": {"lr": "fast"}}, ["train.lr", "fast"]),
    ({"resize": {"size": 260}}, ["resize.size", "renamed resize.image_size"]),
    ({"resize": {"max_skipped": 1.5}}, ["resize.max_skipped", "1.5", "less than or equal to 1"]),
    ({"resize": {"max_skipped": -0.1}}, ["resize.max_skipped", "-0.1", "greater than or equal to 0"]),
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


def _leaves(tree: dict, prefix: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    return f"{value}-changed"


def test_every_parameter_changes_dvcs_run_cache_key():
    """A parameter DVC's run-cache does not hash would let `dvc exp run -S key=value` restore the outputs
    of a run with another value (DVC drops keys named `size` and `nfiles`: resize.size did exactly that)."""
    from dvc.stage.cache import _get_cache_hash  # the function DVC keys its run-cache with

    defaults = parse_params({}).model_dump()

    def key(params: dict) -> str:
        return _get_cache_hash({"cmd": "python stages/x.py", "params": {"params.yaml": params}, "outs": []}, key=True)

    for path, value in _leaves(defaults):
        changed = copy.deepcopy(defaults)
        node = changed
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = _changed(value)
        assert key(changed) != key(defaults), ".".join(path)
