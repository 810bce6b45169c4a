"""The model as evaluated, in one folder to share: the model files and decoding.json (the decoding settings
and the scores they gave). The DVC artifact `captioner` (dvc.yaml) points at it, so `dvc artifacts get`
fetches a folder that `caption predict --model` and `Captioner.load` use with those settings."""
from __future__ import annotations

import shutil
from pathlib import Path

from captioning.io import atomic_dir, atomic_write_json, read_json
from captioning.models.artifact import DECODING
from captioning.params import DecodeParams

SCORES = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider", "spice")


def export_model(model_dir: Path, metrics_json: Path, out_dir: Path, decode: DecodeParams) -> dict:
    """Copy `model_dir` to `out_dir` with decoding.json; the old folder is replaced only once the new one is whole."""
    metrics = read_json(metrics_json)
    decoding = {"beam_size": decode.beam_size, "max_length": decode.max_length,
                "length_penalty": decode.length_penalty,
                "evaluated_on": {"split": metrics.get("split"), "images": metrics.get("images"),
                                 **{k: metrics[k] for k in SCORES if k in metrics}}}
    with atomic_dir(out_dir) as staging:
        shutil.copytree(model_dir, staging, dirs_exist_ok=True)
        atomic_write_json(staging / DECODING, decoding)
    return decoding
