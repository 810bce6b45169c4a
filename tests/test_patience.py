"""`train.patience`: a phase ends after that many epochs without improvement; the next phase's epochs keep
their own numbers, and the kept epoch is found by its number (its log entry and its weights)."""
from __future__ import annotations

import copy

import pytest
import torch
from test_finetune import colour_split
from train_toy import toy_split

from captioning.models.attached_encoder import attach_encoder, image_encoder
from captioning.models.decoders import DecoderConfig, build_decoder
from captioning.models.encoders import build_encoder
from captioning.params import TrainParams
from captioning.train.cross_entropy import CrossEntropyPhase
from captioning.train.driver import Validation
from captioning.train.logs import training_summary
from captioning.train.loop import train_decoder
from captioning.train.scst import SelfCriticalPhase


def scripted_validation(monkeypatch, scores: list[float]) -> list[dict]:
    """Every phase's validation returns the next of `scores` (as CIDEr); returns the weights seen at each."""
    weights = []

    def validate(self, epoch):
        weights.append(copy.deepcopy(self.decoder.state_dict()))
        score = scores[len(weights) - 1]
        return Validation(score, {"val_loss": 1.0, "val_perplexity": 2.7, "val_bleu_4": score / 10, "val_cider": score})
    monkeypatch.setattr(CrossEntropyPhase, "validate", validate)      # the fine-tuning phase inherits it
    monkeypatch.setattr(SelfCriticalPhase, "validate", validate)
    return weights


def assert_kept(result, weights, epochs: list[int], best: int):
    assert [e["epoch"] for e in result.epoch_log] == epochs
    summary = training_summary(result, torch.device("cpu"), None, 1, 1)
    assert (summary["epochs"], summary["best_epoch"]) == (len(epochs), best)
    assert summary["best_val_cider"] == next(e for e in result.epoch_log if e["epoch"] == best)["val_cider"]
    kept = weights[epochs.index(best)]
    assert all(torch.equal(result.best_state[k], kept[k]) for k in kept), "the kept weights are another epoch's"


def toy_run(tmp_path, **overrides):
    train, vocab = toy_split(16, 1)
    val, _ = toy_split(4, 2, vocab)
    p = TrainParams(decoder="show_tell", epochs=6, patience=2, batch_size=8, embed_dim=16, hidden_dim=32, dropout=0.0,
                    scst_batch_size=8, scst_samples=2, **overrides)
    decoder = build_decoder("show_tell", DecoderConfig(len(vocab), 8, 8, 16, 32, 1, 0.0))
    return train_decoder(decoder, train, val, vocab, p, 0, torch.device("cpu"), tmp_path, {"run": "patience"})


def test_patience_alone_stops_and_keeps_the_best_epoch(tmp_path, monkeypatch):
    weights = scripted_validation(monkeypatch, [1.0, 2.0, 1.5, 1.5, 9.0, 9.0])
    assert_kept(toy_run(tmp_path), weights, [1, 2, 3, 4], best=2)


@pytest.mark.parametrize("rerun", [False, True])
def test_patience_then_scst_numbers_scst_epochs_after_the_skipped_ones(tmp_path, monkeypatch, rerun):
    weights = scripted_validation(monkeypatch, [1.0, 2.0, 1.5, 1.5, 3.0, 2.5])
    result = toy_run(tmp_path, scst_epochs=2)
    if rerun:            # the same run again: resumes from its finished checkpoint, the same kept epoch
        result = toy_run(tmp_path, scst_epochs=2)
    assert_kept(result, weights, [1, 2, 3, 4, 7, 8], best=7)


def test_patience_then_fine_tuning_then_scst(tmp_path, monkeypatch):
    """The SCST phase starts from the fine-tuned model (epoch 7), whose entry sits 5th in the log."""
    torch.manual_seed(0)
    spec_encoder = build_encoder("efficientnet_lite0", "none")
    train, vocab = colour_split(tmp_path / "train", 8, 1, spec_encoder)
    val, _ = colour_split(tmp_path / "val", 4, 2, spec_encoder, vocab)
    p = TrainParams(decoder="show_tell", epochs=6, patience=2, finetune_epochs=1, finetune_blocks=1, scst_epochs=1,
                    batch_size=8, embed_dim=8, hidden_dim=16, dropout=0.0, scst_batch_size=8, scst_samples=2)
    decoder = build_decoder("show_tell", DecoderConfig(len(vocab), 1280, 1280, 8, 16, 1, 0.0))
    attach_encoder(decoder, "efficientnet_lite0", "none")
    image_encoder(decoder).load_state_dict(spec_encoder[1].state_dict())
    weights = scripted_validation(monkeypatch, [1.0, 2.0, 1.5, 1.5, 3.0, 2.5])
    result = train_decoder(decoder, train, val, vocab, p, 0, torch.device("cpu"), tmp_path / "state", {"run": "ft"})
    assert [e["phase"] for e in result.epoch_log] == ["xe"] * 4 + ["finetune", "scst"]
    assert_kept(result, weights, [1, 2, 3, 4, 7, 8], best=7)
