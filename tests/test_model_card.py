"""The exported folder's model card (README.md): Hugging Face metadata with the scores of metrics.json, and a
text that says how to load the folder; written with or without a git repository around the stage."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from captioning.models.artifact import CaptionModel, resize_record, save_model
from captioning.models.decoders import DecoderConfig, build_decoder
from captioning.models.export import export_model
from captioning.models.model_card import build_model_card, describe_code_version, git_commit
from captioning.params import parse_params
from captioning.text.vocabulary import build_vocabulary

ROOT = Path(__file__).resolve().parents[1]
METRICS = {"split": "test", "images": 200, "bleu_1": 0.8602268864915519, "bleu_2": 0.7796820717139341,
           "bleu_3": 0.7004366670925607, "bleu_4": 0.6156037892221409, "meteor": 0.4345228417477322,
           "rouge_l": 0.8181695358873492, "cider": 2.6437942764118763, "spice": 0.21}
SCORES = [k for k in METRICS if k not in ("split", "images")]


def make_project(folder: Path, metrics: dict = METRICS) -> Path:
    """A tiny real model folder (random show_tell) and its metrics.json, as train and evaluate write them."""
    torch.manual_seed(0)
    vocab, _ = build_vocabulary(["a dog on the grass", "a cat on a sofa", "a man riding a horse"], 1, 12)
    decoder = build_decoder("show_tell", DecoderConfig(len(vocab), 64, 64, 8, 16, 1, 0.0))
    encoder = {"name": "efficientnet_lite0", "weights": "imagenet", "pooled_dim": 64, "grid_shape": [7, 7, 64],
               "finetuned": False}
    training = {"epochs": 3, "best_epoch": 2, "device": "cpu", "precision": "fp32", "parameters": 1234}
    save_model(CaptionModel("show_tell", decoder, vocab, encoder, {"zero_features": False, "training": training},
                            resize_record(224, "squash")), folder / "models")
    (folder / "metrics").mkdir(parents=True, exist_ok=True)
    (folder / "metrics" / "metrics.json").write_text(json.dumps(metrics))
    return folder


def front_matter(card: str) -> dict:
    assert card.startswith("---\n"), card[:200]
    return yaml.safe_load(card.split("---\n", 2)[1])


def test_the_card_reads_back_with_huggingface_hub_with_the_scores_of_metrics_json(tmp_path):
    ModelCard = pytest.importorskip("huggingface_hub").ModelCard
    make_project(tmp_path)
    params = parse_params({"data": {"source": "coco2017"}, "decode": {"beam_size": 5, "length_penalty": 0.5}})
    export_model(tmp_path / "models", tmp_path / "metrics" / "metrics.json", tmp_path / "captioner", params)

    card = ModelCard.load(tmp_path / "captioner" / "README.md")
    assert card.data.pipeline_tag == "image-to-text"
    assert card.data.library_name == "captioning"
    assert card.data.tags == ["image-captioning", "show_tell", "efficientnet_lite0"]
    assert card.data.datasets == ["coco2017"]
    results = card.data.eval_results
    assert {r.metric_type: r.metric_value for r in results} == {k: METRICS[k] for k in SCORES}
    assert {(r.task_type, r.dataset_type, r.dataset_split) for r in results} == {("image-to-text", "coco2017", "test")}
    assert all(r.metric_args == {"beam_size": 5, "length_penalty": 0.5, "max_length": 20} for r in results)
    assert 'Captioner.load("captioner")' in card.text
    assert "caption predict photo.jpg --model captioner" in card.text
    assert "On 200 images of the `test` split" in card.text
    assert "&id" not in str(card)           # no YAML anchors for the repeated decoding settings


def test_only_the_scores_metrics_json_has_are_listed(tmp_path):
    metrics = {k: v for k, v in METRICS.items() if k != "spice"}
    make_project(tmp_path, metrics)
    card = build_model_card(tmp_path / "models", "captioner", metrics,
                            {"beam_size": 3, "max_length": 20, "length_penalty": 0.0}, parse_params({}))
    listed = front_matter(card)["model-index"][0]["results"][0]["metrics"]
    assert [m["type"] for m in listed] == [k for k in SCORES if k != "spice"]
    assert "SPICE" not in card


def test_training_settings_and_the_commit_are_in_the_text(tmp_path):
    make_project(tmp_path)
    params = parse_params({"seed": 7, "subset": {"train": None}, "vocab": {"threshold": 3},
                           "train": {"epochs": 4, "lr": 0.001, "batch_size": 32, "scst_epochs": 2}})
    card = build_model_card(tmp_path / "models", "captioner", METRICS, {"beam_size": 3, "max_length": 20,
                            "length_penalty": 0.0}, params, f"git commit `{'a' * 40}`")
    for fact in ("all train, 200 val, 200 test", "at least 3 times", "4 epochs, learning rate 0.001",
                 "batch size 32", "2 self-critical (SCST) epochs", "seed 7", f"git commit `{'a' * 40}`",
                 "EfficientNet-Lite0", "Show and Tell"):
        assert fact in card, fact
    assert "fine-tuning epochs" not in card          # train.finetune_epochs is 0


def test_a_vit_gpt2_folder_is_described_from_its_captioning_json(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "captioning.json").write_text(json.dumps({
        "format_version": 2, "decoder": "vit_gpt2", "preprocessing": resize_record(224, "crop"),
        "training": {"epochs": 2, "best_epoch": 2, "checkpoints": {"encoder": "tiny-vit", "decoder": "tiny-gpt2"}}}))
    params = parse_params({"train": {"decoder": "vit_gpt2", "hf": {"lr": 3e-5}}})
    card = build_model_card(tmp_path / "models", "captioner", METRICS,
                            {"beam_size": 3, "max_length": 20, "length_penalty": 0.0}, params)
    assert front_matter(card)["tags"] == ["image-captioning", "vit_gpt2", "vit"]
    for fact in ("`tiny-vit`", "`tiny-gpt2`", "learning rate 3e-05", "GPT-2's tokenizer",
                 'pipeline("image-to-text", model="captioner")'):
        assert fact in card, fact


def test_git_commit_is_none_outside_a_repository_or_without_git(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_commit(tmp_path) is None
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert git_commit(ROOT) is None


@pytest.mark.parametrize("git", ["not a repository", "no git command"])
def test_the_export_stage_runs_without_a_git_repository(tmp_path, git):
    """As in a copy of the project without .git (or a machine without git): the card, with no commit line."""
    make_project(tmp_path)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)}
    if git == "no git command":
        env["PATH"] = str(tmp_path / "no-git-here")
    out = subprocess.run([sys.executable, str(ROOT / "stages" / "export.py"), "--out", "artifacts/captioner"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "artifacts" / "captioner"
    assert {"model.safetensors", "config.json", "vocab.json", "decoding.json", "README.md"} <= {
        p.name for p in folder.iterdir()}
    card = (folder / "README.md").read_text()
    assert front_matter(card)["pipeline_tag"] == "image-to-text"
    assert "git commit" not in card
    assert not list((tmp_path / "artifacts").glob(".*tmp"))       # the staging folder is gone


def test_the_card_names_the_commit_and_says_when_the_code_or_params_differ_from_it(tmp_path):
    """`dvc repro` (or a `dvc exp run`, which rewrites params.yaml) runs before the commit: such a run is not
    the commit's, and the card says so."""
    if shutil.which("git") is None:
        pytest.skip("no git command")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    for cmd in (["init", "-q"], ["add", "params.yaml"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, env=env, check=True, capture_output=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert git_commit(tmp_path) == head
    assert describe_code_version(tmp_path) == f"git commit `{head}`"
    (tmp_path / "notes.txt").write_text("not code\n")
    assert describe_code_version(tmp_path) == f"git commit `{head}`"
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    assert describe_code_version(tmp_path) == f"git commit `{head}`, with uncommitted changes to the code or params"
