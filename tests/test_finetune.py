"""Training the encoder: fine-tuning epochs after the cross-entropy ones (only the last stages thaw), and an
encoder trained from scratch (its BatchNorm learns its statistics)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from captioning.models.attached_encoder import ImageRows, attach_encoder, image_encoder
from captioning.models.decoders import DecoderConfig, build_decoder
from captioning.models.encoders import build_encoder, encoder_stages
from captioning.params import TrainParams
from captioning.text.vocabulary import build_vocabulary
from captioning.train.captions import build_pairs
from captioning.train.finetune import FineTuningPhase
from captioning.train.loop import train_decoder
from captioning.train.split_data import SplitData

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def colour_split(folder, n_images: int, seed: int, spec_encoder, vocab=None):
    """Images of one colour each, their captions name it; features cached from `spec_encoder` as the stage does."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    names = [list(COLOURS)[k] for k in rng.integers(0, len(COLOURS), n_images)]
    ids = list(range(100 * seed, 100 * seed + n_images))
    for i, name in zip(ids, names):
        Image.new("RGB", (64, 64), COLOURS[name]).save(folder / f"{i}.jpg")
    anns = [{"id": 5 * r + j, "image_id": i, "caption": f"{pre} {name} picture"}
            for r, (i, name) in enumerate(zip(ids, names)) for j, pre in enumerate(["a", "one", "a plain"])]
    coco = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in ids], "annotations": anns}
    if vocab is None:
        vocab, _ = build_vocabulary([a["caption"] for a in anns], 1, 8)
    spec, encoder = spec_encoder
    rows = ImageRows(folder, ids, spec)
    with torch.no_grad():
        pooled, grid = encoder(rows.load(range(n_images)))
    split = SplitData(pooled.numpy(), grid.numpy(), ids, build_pairs(coco, {i: r for r, i in enumerate(ids)}, vocab),
                      {i: [a["caption"] for a in anns if a["image_id"] == i] for i in ids}, images=rows)
    return split, vocab


def test_finetuning_epochs_start_from_the_cross_entropy_model_and_train_only_the_last_stages(tmp_path, monkeypatch):
    torch.manual_seed(0)
    spec_encoder = build_encoder("efficientnet_lite0", "none")
    train, vocab = colour_split(tmp_path / "train", 12, 1, spec_encoder)
    val, _ = colour_split(tmp_path / "val", 6, 2, spec_encoder, vocab)
    p = TrainParams(decoder="show_tell", epochs=2, finetune_epochs=1, finetune_blocks=1, encoder_lr=1e-3,
                    batch_size=12, lr=0.01, embed_dim=8, hidden_dim=16, dropout=0.0, select="loss")
    decoder = build_decoder("show_tell", DecoderConfig(len(vocab), 1280, 1280, 8, 16, 1, 0.0))
    attach_encoder(decoder, "efficientnet_lite0", "none")
    image_encoder(decoder).load_state_dict(spec_encoder[1].state_dict())
    before = {k: v.clone() for k, v in image_encoder(decoder).state_dict().items()}
    reads = []
    original = ImageRows.load
    monkeypatch.setattr(ImageRows, "load", lambda self, rows: (reads.append(len(rows)), original(self, rows))[1])
    reads_before_finetuning = []
    start = FineTuningPhase.start
    monkeypatch.setattr(FineTuningPhase, "start", lambda self, state: (reads_before_finetuning.append(len(reads)),
                                                                        start(self, state))[1])
    result = train_decoder(decoder, train, val, vocab, p, 0, torch.device("cpu"), tmp_path / "state", {"run": "ft"})

    assert [e["phase"] for e in result.epoch_log] == ["xe", "xe", "finetune"]
    assert result.epoch_log[2]["lr"] == 1e-3                      # the constant fine-tuning rate, not the schedule's
    assert reads_before_finetuning == [0] and reads                # cached features until the fine-tuning epoch
    encoder = image_encoder(decoder)
    last = {id(q) for q in encoder_stages(encoder)[-1].parameters()}
    for name, q in encoder.named_parameters():
        changed = not torch.equal(q.detach(), before[name])
        assert changed == (id(q) in last), name                   # only the last stage trained
    running = [k for k in before if k.endswith("running_mean")]
    assert all(torch.equal(encoder.state_dict()[k], before[k]) for k in running)   # statistics kept


def test_an_encoder_trained_from_scratch_learns_its_batchnorm_statistics(tmp_path):
    torch.manual_seed(0)
    spec_encoder = build_encoder("efficientnet_lite0", "none")
    train, vocab = colour_split(tmp_path / "train", 8, 1, spec_encoder)
    val, _ = colour_split(tmp_path / "val", 4, 2, spec_encoder, vocab)
    p = TrainParams(decoder="merge", epochs=1, finetune_encoder=True, batch_size=8, lr=0.01, embed_dim=8,
                    hidden_dim=16, dropout=0.0, select="loss")
    decoder = build_decoder("merge", DecoderConfig(len(vocab), 1280, 1280, 8, 16, 1, 0.0))
    attach_encoder(decoder, "efficientnet_lite0", "none", from_scratch=True)
    before = {k: v.clone() for k, v in image_encoder(decoder).state_dict().items() if k.endswith("running_mean")}
    train_decoder(decoder, train, val, vocab, p, 0, torch.device("cpu"), tmp_path / "state", {"run": "scratch"})
    after = image_encoder(decoder).state_dict()
    assert any(not torch.equal(after[k], v) for k, v in before.items())


def test_a_run_killed_inside_scst_after_fine_tuning_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    """The SCST epochs after fine-tuning epochs train the encoder's last stage: after a resume inside SCST too."""
    from captioning.train.scst import SelfCriticalPhase

    spec_encoder = build_encoder("efficientnet_lite0", "none")
    train, vocab = colour_split(tmp_path / "train", 4, 1, spec_encoder)
    val, _ = colour_split(tmp_path / "val", 2, 2, spec_encoder, vocab)
    p = TrainParams(decoder="show_tell", epochs=1, finetune_epochs=1, finetune_blocks=1, encoder_lr=1e-3, scst_epochs=2,
                    scst_batch_size=2, scst_samples=2, scst_lr=1e-3, batch_size=4, embed_dim=8, hidden_dim=16,
                    dropout=0.0, checkpoint_every=1)

    def run(state_dir):
        torch.manual_seed(0)
        decoder = build_decoder("show_tell", DecoderConfig(len(vocab), 1280, 1280, 8, 16, 1, 0.0))
        attach_encoder(decoder, "efficientnet_lite0", "none")
        image_encoder(decoder).load_state_dict(spec_encoder[1].state_dict())
        train_decoder(decoder, train, val, vocab, p, 0, torch.device("cpu"), state_dir, {"run": "scst-ft"})
        return decoder.state_dict()

    uninterrupted = run(tmp_path / "a")
    step, calls = SelfCriticalPhase.step, []

    def killed_in_second_scst_epoch(self, idx, epoch):
        calls.append(epoch)
        if len(calls) == 4:                    # the 2nd SCST epoch's 2nd batch: after its 1st batch's checkpoint
            raise KeyboardInterrupt
        return step(self, idx, epoch)
    monkeypatch.setattr(SelfCriticalPhase, "step", killed_in_second_scst_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    monkeypatch.setattr(SelfCriticalPhase, "step", step)
    resumed = run(tmp_path / "b")
    last_stage = [k for k in uninterrupted if k.startswith("image_encoder.") and not torch.equal(
        uninterrupted[k], spec_encoder[1].state_dict()[k.removeprefix("image_encoder.")])]
    assert last_stage, "the encoder did not train"
    for k in uninterrupted:
        assert torch.equal(uninterrupted[k], resumed[k]), k
