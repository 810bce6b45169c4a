"""The model card (README.md) of the exported captioner, in the Hugging Face format: YAML metadata (task,
tags, dataset and a `model-index` with the scores) above a short text saying what the model is, how it was
trained, how to load it and what it cannot do.

Why: `dvc artifacts get` hands someone a folder of weights; the card lets them judge it without the
pipeline, and the Hub (or any tool reading model cards) finds the task and the scores in the metadata.
Everything comes from files the export stage already has (the model's config, metrics.json, params.yaml),
so the card always states the scores and settings of the model beside it. The metadata is written with
pyyaml: huggingface_hub is an optional extra and the export stage runs on the base install.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from captioning.hf.artifact import DECODER_NAME as HF_DECODER_NAME
from captioning.hf.artifact import OURS as HF_CONFIG
from captioning.io import read_json
from captioning.models.artifact import CONFIG
from captioning.params import Params

CARD = "README.md"
CODE_PATHS = ("src", "stages", "dvc.yaml", "params.yaml")     # what decides the model besides the data
LIBRARY = "captioning"           # pyproject.toml's [project].name
SCORE_NAMES = {"bleu_1": "BLEU-1", "bleu_2": "BLEU-2", "bleu_3": "BLEU-3", "bleu_4": "BLEU-4",
               "meteor": "METEOR", "rouge_l": "ROUGE-L", "cider": "CIDEr", "spice": "SPICE"}
DATASETS = {"synthetic": "synthetic shapes", "coco2014": "COCO 2014", "coco2017": "COCO 2017", "flickr8k": "Flickr8k",
            "karpathy": "the Karpathy splits", "folder": "a local folder of captioned images",
            "imagefolder": "a local image folder with metadata.jsonl captions", "hf": "a Hugging Face dataset"}
DECODERS = {
    "show_tell": "Show and Tell (Vinyals et al. 2015): an LSTM that reads the image vector as its first input",
    "lstm": "an LSTM whose initial hidden and cell states are projected from the image vector",
    "gru_init": "a GRU whose first hidden state is projected from the image vector",
    "merge": "the merge architecture (Tanti et al. 2017): an LSTM over the words, joined by the image vector "
             "after it",
    "soft_attention": "Show, Attend and Tell (Xu et al. 2015): an LSTM with soft attention over the image's "
                      "feature grid",
    "bahdanau_gated": "an LSTM with gated additive (Bahdanau) attention over the image's feature grid and a deep "
                      "output layer",
    "top_down": "the Up-Down decoder (Anderson et al. 2018): an attention LSTM and a language LSTM over the "
                "image's feature grid",
    "transformer": "a small transformer decoder over the image's feature grid, trained from scratch",
    HF_DECODER_NAME: "GPT-2 reading a Vision Transformer through cross-attention (a transformers "
                     "VisionEncoderDecoderModel), both fine-tuned together",
}
ENCODERS = {"efficientnet_lite0": "EfficientNet-Lite0", "efficientnet_lite1": "EfficientNet-Lite1",
            "efficientnet_lite2": "EfficientNet-Lite2", "resnet18": "ResNet-18", "resnet34": "ResNet-34",
            "resnet50": "ResNet-50", "resnet101": "ResNet-101", "resnet152": "ResNet-152",
            "densenet121": "DenseNet-121", "inception_v3": "Inception-v3", "vit": "Vision Transformer (ViT)"}


@dataclass(frozen=True)
class ModelFacts:
    """What the model folder's own config says about the model."""
    decoder: str
    encoder: str                 # an EncoderName, or "vit" for vit_gpt2
    encoder_words: str           # the encoder, its weights and whether it trained, in words
    training: dict               # the training summary (epochs run, kept epoch, parameters, ...)
    config: dict                 # the whole config (config.json, or captioning.json for vit_gpt2)


def read_model_facts(model_dir: Path) -> ModelFacts:
    """From config.json (this pipeline's decoders) or captioning.json (vit_gpt2, Hugging Face layout)."""
    hf_config = model_dir / HF_CONFIG
    if hf_config.exists() and read_json(hf_config).get("decoder") == HF_DECODER_NAME:
        config = read_json(hf_config)
        checkpoints = config.get("training", {}).get("checkpoints", {})
        words = (f"the pretrained ViT `{checkpoints.get('encoder', 'unknown')}` and GPT-2 "
                 f"`{checkpoints.get('decoder', 'unknown')}`, fine-tuned together on the images")
        return ModelFacts(HF_DECODER_NAME, "vit", words, config.get("training", {}), config)
    config = read_json(model_dir / CONFIG)
    encoder = config.get("encoder", {})
    name = encoder.get("name", "unknown")
    weights = {"imagenet": "ImageNet-pretrained", "none": "randomly initialised"}.get(
        encoder.get("weights"), f"with the weights of `{encoder.get('weights')}`")
    trained = ("fine-tuned with the decoder" if encoder.get("finetuned")
               else "frozen (its features were computed once, before training)")
    words = f"the {ENCODERS.get(name, name)} image encoder, {weights}, {trained}"
    return ModelFacts(config.get("decoder", "unknown"), name, words, config.get("training", {}), config)


def _git(args: list[str], cwd: Optional[Path]) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(cwd: Optional[Path] = None) -> Optional[str]:
    """The commit of the code that ran, or None where there is none to ask (no git, not a repository)."""
    commit = _git(["rev-parse", "HEAD"], cwd)
    return commit if commit and len(commit) == 40 else None


def describe_code_version(cwd: Optional[Path] = None) -> Optional[str]:
    """The commit the run came from, and whether the code or params differed from it: the usual order is
    `dvc repro`, then commit, and a `dvc exp run` rewrites params.yaml, so a card must not pass such a run
    off as the commit's. None where git cannot say."""
    commit = git_commit(cwd)
    if commit is None:
        return None
    changed = _git(["status", "--porcelain", "--", *CODE_PATHS], cwd)
    return f"git commit `{commit}`" + (", with uncommitted changes to the code or params" if changed else "")


def card_metrics(metrics: dict, decoding: dict) -> list[dict]:
    """model-index metrics: each score metrics.json has, under the decoding settings that gave it."""
    args = {key: decoding[key] for key in ("beam_size", "length_penalty", "max_length")}
    # a copy for each metric: one shared dict would be written as YAML anchors (&id001, *id001)
    return [{"type": key, "value": metrics[key], "name": f"{name} ({metrics.get('split')})", "args": dict(args)}
            for key, name in SCORE_NAMES.items() if key in metrics]


def card_metadata(name: str, facts: ModelFacts, metrics: dict, decoding: dict, params: Params) -> dict:
    """The YAML front matter: Hugging Face model-card metadata with a model-index of the scores."""
    source = params.data.source
    dataset = params.data.hf.name if source == "hf" else source     # the Hub id, which the Hub links to
    result = {"task": {"type": "image-to-text", "name": "Image captioning"},
              "dataset": {"name": DATASETS.get(source, source), "type": dataset, "split": metrics.get("split")},
              "metrics": card_metrics(metrics, decoding)}
    return {"pipeline_tag": "image-to-text", "library_name": LIBRARY, "language": ["en"],
            "tags": ["image-captioning", facts.decoder, facts.encoder], "datasets": [dataset],
            "model-index": [{"name": name, "results": [result]}]}


def describe_model(facts: ModelFacts) -> str:
    decoder = DECODERS.get(facts.decoder, facts.decoder)
    parameters = facts.training.get("parameters")
    size = f" It has {parameters:,} parameters." if isinstance(parameters, int) else ""
    ignores = (" It was trained on zeroed image features (the pipeline's honesty check): it ignores the image."
               if facts.config.get("zero_features") else "")
    return (f"An image-captioning model: it writes one English sentence about a photo.\n\n"
            f"- Decoder (`{facts.decoder}`): {decoder}.\n- Encoder (`{facts.encoder}`): {facts.encoder_words}.\n\n"
            f"It was trained and exported by the DVC pipeline of the `{LIBRARY}` package.{size}{ignores}\n")


def subset_sizes(params: Params) -> str:
    """`subset` in words: images per split (null = every image of that split)."""
    sizes = params.subset.model_dump()
    return ", ".join(f"{'all' if n is None else f'{n:,}'} {split}" for split, n in sizes.items())


def describe_optimisation(facts: ModelFacts, params: Params) -> list[str]:
    """The training schedule: epochs, rate, batch, then SCST or encoder fine-tuning epochs where there were any."""
    t = params.train
    lr = t.hf.lr if facts.decoder == HF_DECODER_NAME else t.lr
    lines = [f"- Cross-entropy: {t.epochs} epochs, learning rate {lr} ({t.lr_schedule}), batch size "
             f"{t.batch_size}, label smoothing {t.label_smoothing}."]
    if t.finetune_encoder:
        lines.append(f"- The encoder trained end to end with the decoder from the first epoch, at rate {t.encoder_lr}.")
    if t.finetune_epochs:
        blocks = "all" if t.finetune_blocks is None else f"the last {t.finetune_blocks}"
        lines.append(f"- Then {t.finetune_epochs} fine-tuning epochs that also trained {blocks} of the encoder's "
                     f"stages, at rate {t.encoder_lr}.")
    if t.scst_epochs:
        lines.append(f"- Then {t.scst_epochs} self-critical (SCST) epochs on CIDEr-D, rate {t.scst_lr}, "
                     f"{t.scst_samples} sampled captions per image.")
    run, kept = facts.training.get("epochs"), facts.training.get("best_epoch")
    if run is not None and kept is not None:
        lines.append(f"- {run} epochs trained in all; the model is the one of epoch {kept}, the best by validation "
                     f"{t.select}.")
    return lines


def describe_training(facts: ModelFacts, params: Params, code_version: Optional[str]) -> str:
    source = params.data.source
    if facts.decoder == HF_DECODER_NAME:
        words = f"- Words: GPT-2's tokenizer; training captions cut at {params.vocab.max_length} words."
    else:
        words = (f"- Vocabulary: {facts.config.get('vocab_size', '?')} tokens, the words seen at least "
                 f"{params.vocab.threshold} times in the training captions and the special tokens; captions cut "
                 f"at {params.vocab.max_length} words.")
    resize = facts.config.get("preprocessing", {}).get("resize")
    images = f" resized to {resize['image_size']} pixels ({resize['mode']})" if resize else ""
    where = [facts.training.get(k) for k in ("device", "precision")]
    ran_on = f"- Ran on {where[0]} in {where[1]}, seed {params.seed}." if all(where) else f"- Seed {params.seed}."
    code = f"- Code: {code_version}." if code_version else ""
    lines = [f"- Data: {DATASETS.get(source, source)} (`data.source: {source}`); images per split: "
             f"{subset_sizes(params)}{';' if images else ''}{images}.", words,
             *describe_optimisation(facts, params), ran_on, code]
    return "\n".join(line for line in lines if line) + "\n"


def describe_usage(folder: str, facts: ModelFacts) -> str:
    hf = (f"\nIts files are in the Hugging Face layout too: `transformers.pipeline(\"image-to-text\", "
          f"model=\"{folder}\")` loads it (without this package's resize step).\n"
          if facts.decoder == HF_DECODER_NAME else "")
    return (f"With this project's package installed (`pip install -e .` in its repository):\n\n"
            f"```python\nfrom captioning import Captioner\n\ncaptioner = Captioner.load(\"{folder}\")\n"
            f"captioner(\"photo.jpg\")                  # one caption, a string\n```\n\n"
            f"```bash\ncaption predict photo.jpg --model {folder}\n```\n\n"
            f"Both decode as the model was evaluated (decoding.json in this folder); photos are resized as the "
            f"training images were. Fetch the folder from the project's repository with "
            f"`dvc artifacts get <repository> {folder} -o {folder}`.\n{hf}")


def score_table(metrics: dict, decoding: dict) -> str:
    rows = [f"| {name} | {metrics[key]:.4f} |" for key, name in SCORE_NAMES.items() if key in metrics]
    return (f"On {metrics.get('images')} images of the `{metrics.get('split')}` split, beam size "
            f"{decoding['beam_size']}, length penalty {decoding['length_penalty']}, at most "
            f"{decoding['max_length']} words:\n\n| metric | score |\n|---|---|\n" + "\n".join(rows) + "\n")


def describe_limits(facts: ModelFacts, metrics: dict, params: Params) -> str:
    source = params.data.source
    lines = [f"- The scores come from {metrics.get('images')} images of the `{metrics.get('split')}` split of "
             f"{DATASETS.get(source, source)}: a small sample, from the same source as the training images; expect "
             "lower scores on other photos.",
             f"- It learnt only from {DATASETS.get(source, source)}: photos unlike those (other subjects, "
             "drawings, screenshots, text) get captions in that data's words, often wrong.",
             "- English only. It never writes words outside its vocabulary, and writes one short sentence per "
             "image, not a detailed description.",
             "- Captions can be generic, repeat phrases, or state things that are not in the photo; nothing "
             "filters what it writes. Do not use it where a wrong caption does harm (e.g. accessibility without "
             "review)."]
    if source == "synthetic":
        lines.insert(0, "- Trained on generated coloured shapes (the offline dataset): a test of the pipeline, "
                        "not a model for photos.")
    if facts.config.get("zero_features"):
        lines.insert(0, "- Trained on zeroed image features: its captions do not depend on the image.")
    return "\n".join(lines) + "\n"


def build_model_card(model_dir: Path, folder: str, metrics: dict, decoding: dict, params: Params,
                     code_version: Optional[str] = None) -> str:
    """README.md for the exported folder named `folder`: YAML front matter, then the text. `code_version`:
    what `describe_code_version` says (None: no line)."""
    facts = read_model_facts(Path(model_dir))
    metadata = card_metadata(folder, facts, metrics, decoding, params)
    front = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    title = f"{folder}: {facts.decoder} on {ENCODERS.get(facts.encoder, facts.encoder)}"
    sections = [("Model", describe_model(facts)), ("Training", describe_training(facts, params, code_version)),
                ("Scores", score_table(metrics, decoding)), ("How to use", describe_usage(folder, facts)),
                ("Limits", describe_limits(facts, metrics, params))]
    body = "\n".join(f"## {heading}\n\n{text}" for heading, text in sections)
    return f"---\n{front}---\n\n# {title}\n\n{body}"
