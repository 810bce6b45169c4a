"""The moving average of the SCST weights (train.scst_ema): what it averages, what it keeps, and that it
survives a resume."""
from __future__ import annotations

import torch
from torch import nn

from captioning.models.decoders import DecoderConfig, build_decoder
from captioning.params import TrainParams
from captioning.train.checkpoint import CHECKPOINT
from captioning.train.loop import _val_captions, train_decoder
from captioning.train.validate import quick_scores
from captioning.train.weight_average import WeightAverage
from train_toy import toy_split


def test_the_average_follows_the_weights_and_is_applied_only_inside_its_block():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.5)
    for value in (1.0, 3.0, 3.0):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update(model)
    # warm-up keeps min(0.5, (1 + n) / (10 + n)) of the average: 2/11, then 0.25, then 0.5
    expected = 0.0
    for n, value in enumerate((1.0, 3.0, 3.0), start=1):
        keep = min(0.5, (1 + n) / (10 + n))
        expected = keep * expected + (1 - keep) * value
    with average.applied(model):
        assert torch.allclose(model.weight, torch.full((1, 2), expected))
    assert torch.equal(model.weight, torch.full((1, 2), 3.0))


def _scst_run(tmp_path, scst_epochs: int, scst_ema: float):
    torch.manual_seed(0)
    train, vocab = toy_split(16, 1)
    val, _ = toy_split(4, 2, vocab)
    p = TrainParams(decoder="show_tell", epochs=1, batch_size=16, embed_dim=16, hidden_dim=32, dropout=0.0,
                    scst_epochs=scst_epochs, scst_batch_size=4, scst_samples=2, scst_lr=0.01, scst_ema=scst_ema)
    decoder = build_decoder("show_tell", DecoderConfig(len(vocab), 8, 8, 16, 32, 1, 0.0))
    result = train_decoder(decoder, train, val, vocab, p, 0, torch.device("cpu"), tmp_path, "run")
    return result, torch.load(tmp_path / CHECKPOINT, weights_only=True), (decoder, val, vocab, p)


def test_the_average_does_not_change_training_and_is_what_validation_scores(tmp_path):
    _, plain, _ = _scst_run(tmp_path / "plain", 2, 0.0)
    result, averaged, (decoder, val, vocab, p) = _scst_run(tmp_path / "ema", 2, 0.9)
    # the optimizer's own weights take the same steps with or without the average
    for key, value in plain["model"].items():
        assert torch.equal(value, averaged["model"][key]), key
    assert plain["weight_average"] is None
    weights = averaged["weight_average"]["weights"]
    assert averaged["weight_average"]["updates"] == 2 * 4       # 16 images, 4 per SCST step, 2 epochs
    assert any(not torch.equal(weights[k], averaged["model"][k]) for k in weights)
    # the last epoch's validation CIDEr is the average's, and the training goes on with its own weights
    decoder.load_state_dict(weights, strict=False)
    scores = quick_scores(val.references, _val_captions(decoder, val, p, torch.device("cpu"), vocab, vocab.max_length))
    assert round(scores["cider"], 5) == result.epoch_log[-1]["val_cider"]


def test_a_run_continued_into_more_scst_epochs_averages_as_one_run_would(tmp_path):
    _, straight, _ = _scst_run(tmp_path / "straight", 2, 0.9)
    _scst_run(tmp_path / "continued", 1, 0.9)
    _, continued, _ = _scst_run(tmp_path / "continued", 2, 0.9)
    assert continued["weight_average"]["updates"] == straight["weight_average"]["updates"]
    for key, value in straight["weight_average"]["weights"].items():
        assert torch.equal(value, continued["weight_average"]["weights"][key]), key
