"""The model as evaluated, in one folder to share: the model files, decoding.json (the decoding settings
and the scores they gave) and README.md (its model card, models/model_card.py). The DVC artifact `captioner`
(dvc.yaml) points at it, so `dvc artifacts get` fetches a folder that `caption predict --model` and
`Captioner.load` use with those settings, and that says what it is."""
from __future__ import annotations

import shutil
from pathlib import Path

from captioning.io import atomic_dir, atomic_write_json, atomic_write_text, read_json
from captioning.models.artifact import DECODING
from captioning.models.model_card import CARD, SCORE_NAMES, build_model_card, describe_code_version
from captioning.params import Params

SCORES = tuple(SCORE_NAMES)


def export_model(model_dir: Path, metrics_json: Path, out_dir: Path, params: Params) -> dict:
    """Copy `model_dir` to `out_dir` with decoding.json and the model card; the old folder is replaced only
    once the new one is whole. The card names the git commit where there is one (none: no line, no error)."""
    metrics = read_json(metrics_json)
    decode = params.decode
    decoding = {"beam_size": decode.beam_size, "max_length": decode.max_length,
                "length_penalty": decode.length_penalty,
                "evaluated_on": {"split": metrics.get("split"), "images": metrics.get("images"),
                                 **{k: metrics[k] for k in SCORES if k in metrics}}}
    card = build_model_card(model_dir, Path(out_dir).name, metrics, decoding, params, describe_code_version())
    with atomic_dir(out_dir) as staging:
        shutil.copytree(model_dir, staging, dirs_exist_ok=True)
        atomic_write_json(staging / DECODING, decoding)
        atomic_write_text(staging / CARD, card)
    return decoding
