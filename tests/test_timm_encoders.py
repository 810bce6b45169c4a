"""`features.encoder: timm/<model>`: any timm backbone, offline, with timm's tiny `test_*` models and random
weights (the Hub's pretrained weights need the network)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from captioning.features.extract import extract_split
from captioning.features.store import META, FeatureStore
from captioning.io import InputError
from captioning.models.encoders import build_encoder, encoder_spec, last_stages
from captioning.params import parse_params

CNN, VIT = "timm/test_resnet", "timm/test_vit"


def encode(name: str, weights: str = "none", batch: int = 2):
    torch.manual_seed(0)
    spec, encoder = build_encoder(name, weights)
    images = torch.randn(batch, 3, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        pooled, grid = encoder(images)
        tokens = encoder.backbone(images)
    return spec, encoder, pooled, grid, tokens


def test_cnn_grid_is_the_flattened_feature_map_and_pooled_its_mean():
    spec, _, pooled, grid, fmap = encode(CNN)
    h, w = spec.grid_hw
    assert fmap.shape == (2, spec.pooled_dim, h, w)
    assert pooled.shape == (2, spec.pooled_dim) and grid.shape == (2, h * w, spec.pooled_dim)
    torch.testing.assert_close(grid, fmap.flatten(2).transpose(1, 2))
    torch.testing.assert_close(pooled, grid.mean(dim=1))


def test_vit_grid_leaves_out_the_class_token_and_pooled_is_the_class_token():
    spec, encoder, pooled, grid, tokens = encode(VIT)
    model = encoder.backbone.model
    assert model.num_prefix_tokens == 1 and model.has_class_token
    assert spec.grid_hw == (10, 10) and tokens.shape == (2, 1 + 100, spec.pooled_dim)   # 160 px / patch 16
    assert grid.shape == (2, 100, spec.pooled_dim)
    torch.testing.assert_close(grid, tokens[:, 1:])
    torch.testing.assert_close(pooled, tokens[:, 0])


def test_vit_without_a_class_token_pools_the_mean_of_the_grid():
    spec, encoder, pooled, grid, tokens = encode("timm/test_vit_relpos")
    assert encoder.prefix_tokens == 0 and not encoder.class_token
    assert grid.shape == (2, spec.grid_hw[0] * spec.grid_hw[1], spec.pooled_dim)
    torch.testing.assert_close(pooled, grid.mean(dim=1))


def test_preprocessing_comes_from_the_pretrained_config():
    import timm

    spec, encoder = build_encoder(CNN, "none")
    config = timm.data.resolve_model_data_config(encoder.backbone.model)
    assert (spec.input_size, spec.mean, spec.std, spec.interpolation) == (
        config["input_size"][1], tuple(config["mean"]), tuple(config["std"]), config["interpolation"])
    assert spec.interpolation == "bilinear"                     # test_resnet's, not the registry's bicubic
    x = spec.preprocess(Image.new("RGB", (50, 80), (255, 255, 255)))
    want = (1 - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    assert x.shape == (3, 160, 160) and torch.allclose(x, want.view(3, 1, 1).expand_as(x))


def test_spec_without_weights_matches_the_built_encoder():
    """decode, plots and `caption predict` read the spec by name (random weights, no download)."""
    built, _ = build_encoder(VIT, "none")
    by_name = encoder_spec(VIT)
    assert (by_name.input_size, by_name.mean, by_name.pooled_dim, by_name.grid_hw) == (
        built.input_size, built.mean, built.pooled_dim, built.grid_hw)


def test_unknown_model_is_named_with_close_names():
    with pytest.raises(InputError, match=r"timm/resnet_18.*no model 'resnet_18'.*did you mean timm/resnet18"):
        build_encoder("timm/resnet_18", "none")


def test_params_take_timm_names_and_refuse_bad_weights():
    assert parse_params({"features": {"encoder": CNN, "weights": "none"}}).features.encoder == CNN
    with pytest.raises(InputError, match=r"features\.weights = '/no/such/file\.safetensors'.*imagenet, none or "
                                         r"the path of an existing weights file"):
        parse_params({"features": {"encoder": CNN, "weights": "/no/such/file.safetensors"}})
    with pytest.raises(InputError, match=r"features\.encoder = 'vit_tiny'.*efficientnet_lite0.*timm/<model name>"):
        parse_params({"features": {"encoder": "vit_tiny"}})


def test_weights_file_that_does_not_fit_names_file_and_model(tmp_path):
    from safetensors.torch import save_file

    wrong = tmp_path / "wrong.safetensors"
    save_file({"nothing.weight": torch.zeros(2)}, str(wrong))
    with pytest.raises(InputError, match=r"wrong\.safetensors.*not weights of timm/test_resnet"):
        build_encoder(CNN, str(wrong))
    with pytest.raises(InputError, match=r"missing\.pth.*no such file"):
        build_encoder(CNN, str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_file_round_trip_gives_the_same_features(tmp_path, suffix):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    source = timm.create_model("test_resnet", pretrained=False).eval()
    path = tmp_path / f"weights{suffix}"
    state = source.state_dict()
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    assert parse_params({"features": {"encoder": CNN, "weights": str(path)}}).features.weights == str(path)
    spec, encoder = build_encoder(CNN, str(path))
    x = torch.randn(2, 3, spec.input_size, spec.input_size)
    with torch.inference_mode():
        want = source.forward_features(x)
        pooled, grid = encoder(x)
    torch.testing.assert_close(grid, want.flatten(2).transpose(1, 2))
    torch.testing.assert_close(pooled, want.mean(dim=(2, 3)))


def test_offline_imagenet_weights_give_both_ways_out(monkeypatch):
    import timm.models._hub as hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")
    monkeypatch.setattr(hub, "hf_hub_download", offline)
    with pytest.raises(InputError, match=r"timm/test_resnet.*imagenet.*HF_HOME.*hf\.co/timm/test_resnet\.r160_in1k"
                                         r".*features\.weights to its path.*features\.weights = none"):
        build_encoder(CNN, "imagenet")


def test_finetune_blocks_count_timm_stages_used_by_the_grid():
    _, encoder = build_encoder("timm/test_convnext", "none")
    stages = last_stages(encoder, None)
    used = {id(q) for stage in stages for q in stage.parameters()}
    head_norm = encoder.backbone.model.head.norm.weight            # after forward_features: not part of the grid
    assert len(stages) == 5 and id(head_norm) not in used          # stem, 4 stages
    assert {id(q) for q in last_stages(encoder, 1)[0].parameters()} == {
        id(q) for q in encoder.backbone.model.stages[3].parameters()}
    encoder.stages_countable = False                               # a timm model without group_matcher
    with pytest.raises(InputError, match=r"train\.finetune_blocks = 2.*timm/test_convnext.*null"):
        last_stages(encoder, 2)


def test_features_stage_code_writes_the_timm_grid(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in (4, 9):
        Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    meta = extract_split(folder, [4, 9], tmp_path / "f", VIT, "none", batch_size=2)
    store = FeatureStore(tmp_path / "f")
    assert meta["grid_shape"] == [10, 10, 64] and store.grid.shape == (2, 100, 64) and store.pooled.shape == (2, 64)
    assert json.loads((tmp_path / "f" / META).read_text())["encoder"] == VIT


@pytest.mark.slow
def test_dvc_exp_run_with_a_timm_encoder_reaches_metrics(tmp_path):
    from dvc_project import create_project, run
    from test_pipeline import TINY

    work = create_project(tmp_path, TINY)
    run(["dvc", "repro"], work)
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-qm", "repro"], work)
    log = run(["dvc", "exp", "run", "-S", "features.encoder=timm/test_resnet", "-S", "features.weights=none"], work)
    assert "Running stage 'features'" in log and "Running stage 'evaluate'" in log, log[-2000:]
    meta = json.loads((work / "data" / "features" / "test" / META).read_text())
    assert meta["encoder"] == "timm/test_resnet" and meta["grid_shape"] == [5, 5, 96]
    metrics = json.loads((work / "metrics" / "metrics.json").read_text())
    assert "cider" in metrics and metrics["images"] == 10
