"""Self-critical training: the CIDEr-D reward is the toolkit's CIDEr-D, and SCST raises it."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocoevalcap.cider.cider import Cider
from train_toy import toy_split

from captioning.models.decoders import DecoderConfig, build_decoder
from captioning.models.decoders.base import forbid_special_tokens
from captioning.params import TrainParams
from captioning.text.tokenizer import tokenize
from captioning.train.cider_reward import CiderD
from captioning.train.loop import train_decoder
from captioning.train.scst import END_WORD, draw_words, reward_references, sample_captions, words_of


def test_reward_equals_pycocoevalcap_cider_on_real_captions(shared_data):
    coco = json.loads((shared_data / "coco" / "annotations" / "captions_val2017.json").read_text())
    by_image: dict[int, list[str]] = {}
    for ann in sorted(coco["annotations"], key=lambda a: a["id"]):
        by_image.setdefault(ann["image_id"], []).append(ann["caption"])
    ids = sorted(i for i, caps in by_image.items() if len(caps) >= 5)[:300]
    # Candidate: the image's own first caption (refs: the rest) or, for every third image, another image's.
    refs = {i: [tokenize(c) for c in by_image[i][1:]] for i in ids}
    cands = {i: tokenize(by_image[ids[(k + 1) % len(ids)]][0] if k % 3 == 0 else by_image[i][0])
             for k, i in enumerate(ids)}
    _, expected = Cider().compute_score({i: [" ".join(r) for r in refs[i]] for i in ids},
                                        {i: [" ".join(cands[i])] for i in ids})
    reward = CiderD(refs)
    got = np.array([reward.score(i, cands[i]) for i in ids])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert got.std() > 0.1      # the candidates differ: a constant would not pass this


def test_samples_stop_at_end_and_carry_gradient():
    torch.manual_seed(0)
    train, vocab = toy_split(8, 1)
    decoder = build_decoder("soft_attention", DecoderConfig(len(vocab), 8, 8, 16, 32, 1, 0.0))
    feats = train.features(np.arange(4), torch.device("cpu"), False, True)
    tokens, logprob = sample_captions(decoder, feats, 3, vocab.start_id, vocab.end_id, max_length=6)
    assert tokens.shape[0] == 12 and tokens.shape[1] <= 7
    for row in tokens.tolist():
        if vocab.end_id in row:     # nothing but padding after <end>
            assert all(t == 0 for t in row[row.index(vocab.end_id) + 1:])
    assert logprob.requires_grad and bool((logprob < 0).all())


def test_words_are_drawn_with_the_models_probabilities_and_never_an_impossible_one():
    torch.manual_seed(0)
    probs = torch.tensor([0.0, 0.5, 0.3, 0.0, 0.15, 0.05, 0.0])      # <pad> first, a gap, and a last word
    counts = torch.bincount(draw_words(probs.expand(200_000, -1)), minlength=7).float() / 200_000
    np.testing.assert_allclose(counts.numpy(), probs.numpy(), atol=0.005)
    assert counts[0] == 0 and counts[3] == 0 and counts[6] == 0


@pytest.mark.parametrize("name", ["soft_attention", "show_tell", "transformer"])
def test_sampled_log_probabilities_are_the_decoders_own(name):
    """Each sampled caption's summed log-probability (the policy gradient's) is the one the decoder gives
    its words when reading them (teacher forcing, over the tokens a caption may contain), <end> included,
    and nothing after it."""
    torch.manual_seed(0)
    train, vocab = toy_split(8, 1)
    decoder = build_decoder(name, DecoderConfig(len(vocab), 8, 8, 16, 32, 1, 0.0)).eval()
    feats = train.features(np.arange(6), torch.device("cpu"), False, True)
    tokens, logprob = sample_captions(decoder, feats, 4, vocab.start_id, vocab.end_id, max_length=8)
    lengths = [row.index(vocab.end_id) + 1 if vocab.end_id in row else len(row) for row in tokens.tolist()]
    assert len(set(lengths)) > 2                 # captions of several lengths, some ended early
    inputs = torch.cat([torch.full((len(tokens), 1), vocab.start_id), tokens[:, :-1]], dim=1)
    inputs = inputs.masked_fill(torch.arange(inputs.shape[1]) >= torch.tensor(lengths)[:, None], 0)
    index = torch.arange(6).repeat_interleave(4)
    with torch.no_grad():
        logp = torch.log_softmax(forbid_special_tokens(decoder(feats.select(index), inputs).float()), dim=-1)
    read = [float(logp[i, torch.arange(n), tokens[i, :n]].sum()) for i, n in enumerate(lengths)]
    np.testing.assert_allclose(logprob.detach().numpy(), np.asarray(read), rtol=1e-4, atol=1e-4)


def test_samples_never_contain_pad_start_or_unk_even_when_the_decoder_prefers_them():
    """Such a token mid-caption would cut the rewarded caption short (or vanish from it) while the words
    after it still counted in the policy gradient."""
    torch.manual_seed(0)
    train, vocab = toy_split(8, 1)
    decoder = build_decoder("show_tell", DecoderConfig(len(vocab), 8, 8, 16, 32, 1, 0.0)).eval()
    not_words = [vocab.pad_id, vocab.start_id, vocab.unk_id]
    with torch.no_grad():
        decoder.out.bias[not_words] += 100.0          # each far likelier than any word, at every step
    feats = train.features(np.arange(4), torch.device("cpu"), False, True)
    tokens, logprob = sample_captions(decoder, feats, 3, vocab.start_id, vocab.end_id, max_length=6)
    captions = [row[:row.index(vocab.end_id)] if vocab.end_id in row else row for row in tokens.tolist()]
    assert [sorted(set(c) & set(not_words)) for c in captions] == [[]] * len(captions)
    assert bool(torch.isfinite(logprob).all())


@pytest.mark.parametrize("name", ["soft_attention", "show_tell"])
def test_self_critical_epochs_raise_the_cider_reward(tmp_path, name):
    torch.manual_seed(0)
    train, vocab = toy_split(64, 1)
    val, _ = toy_split(16, 2, vocab)
    # One short cross-entropy epoch leaves the colour half-learnt; SCST must then raise the reward.
    p = TrainParams(decoder=name, epochs=1, batch_size=16, lr=0.003, embed_dim=16, hidden_dim=32, dropout=0.0,
                    lr_schedule="constant", select="cider", scst_epochs=4, scst_lr=0.01, scst_batch_size=8,
                    scst_samples=4)
    decoder = build_decoder(name, DecoderConfig(len(vocab), 8, 8, 16, 32, 1, 0.0))
    result = train_decoder(decoder, train, val, vocab, p, 0, torch.device("cpu"), tmp_path, {"run": "scst"})
    log = result.epoch_log
    assert [e["phase"] for e in log] == ["xe"] + ["scst"] * 4
    rewards = [e["train_reward"] for e in log[1:]]
    assert rewards[-1] > rewards[0] + 0.2, rewards
    assert max(e["val_cider"] for e in log[1:]) > log[0]["val_cider"], log
    # the likelihood is not SCST's objective: its epochs log no validation loss (computing it cost time)
    assert log[0]["val_loss"] > 0 and all(e["val_loss"] is None for e in log[1:])


def test_checkpoint_inside_the_first_scst_epoch_needs_the_same_scst_settings(tmp_path, capsys):
    from captioning.train.checkpoint import CHECKPOINT

    train, vocab = toy_split(16, 1)
    val, _ = toy_split(4, 2, vocab)
    common = dict(decoder="show_tell", epochs=1, batch_size=16, embed_dim=16, hidden_dim=32, dropout=0.0,
                  scst_epochs=1, scst_batch_size=4, scst_samples=2)
    decoder = build_decoder("show_tell", DecoderConfig(len(vocab), 8, 8, 16, 32, 1, 0.0))
    train_decoder(decoder, train, val, vocab, TrainParams(**common), 0, torch.device("cpu"), tmp_path, {"run": "run"})
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    state.update(epoch=1, batch=2)             # as if killed half-way through the first SCST epoch
    torch.save(state, tmp_path / CHECKPOINT)
    capsys.readouterr()
    other = TrainParams(**common, scst_lr=1e-3)
    train_decoder(decoder, train, val, vocab, other, 0, torch.device("cpu"), tmp_path, {"run": "run"})
    assert "from other SCST settings" in capsys.readouterr().out


def test_the_reward_counts_the_end_of_a_caption_so_stopping_mid_phrase_costs_more():
    refs = {1: [tokenize(c) for c in ("a dog runs on the grass", "a brown dog is running on the grass",
                                      "the dog runs across a field", "a dog running on green grass")],
            2: [tokenize(c) for c in ("a man rides a bike on the road", "a cyclist on a road")]}
    complete, cut = tokenize("a dog runs on the grass"), tokenize("a dog runs on the")
    plain, marked = CiderD(refs), reward_references(refs)
    gap_plain = plain.score(1, complete) - plain.score(1, cut)
    gap_marked = marked.score(1, complete + [END_WORD]) - marked.score(1, cut + [END_WORD])
    assert gap_marked > gap_plain > 0


def test_sampled_words_mark_the_end_only_when_the_caption_ended():
    _, vocab = toy_split(8, 1)
    word = vocab.words[5]
    tokens = torch.tensor([[5, vocab.end_id, 0], [5, 5, 5]])
    assert words_of(tokens, vocab, mark_end=True) == [[word, END_WORD], [word, word, word]]
    assert words_of(tokens, vocab) == [[word], [word, word, word]]


def test_more_scst_epochs_continue_a_finished_run(tmp_path, capsys):
    train, vocab = toy_split(16, 1)
    val, _ = toy_split(4, 2, vocab)
    common = dict(decoder="show_tell", epochs=1, batch_size=16, embed_dim=16, hidden_dim=32, dropout=0.0,
                  scst_batch_size=4, scst_samples=2)
    decoder = build_decoder("show_tell", DecoderConfig(len(vocab), 8, 8, 16, 32, 1, 0.0))
    train_decoder(decoder, train, val, vocab, TrainParams(**common, scst_epochs=1), 0, torch.device("cpu"), tmp_path,
                  {"run": "run"})
    capsys.readouterr()
    result = train_decoder(decoder, train, val, vocab, TrainParams(**common, scst_epochs=2), 0, torch.device("cpu"),
                           tmp_path, {"run": "run"})
    assert "resuming at epoch 3" in capsys.readouterr().out
    assert [e["phase"] for e in result.epoch_log] == ["xe", "scst", "scst"]



def test_a_mirrored_images_samples_are_rewarded_against_the_mirrored_references(monkeypatch):
    """Shown mirrored, "a circle on the right" is the right answer for an image whose references say left."""
    from captioning.text.vocabulary import build_vocabulary
    from captioning.train import scst

    refs = ["a red circle on the left", "one red circle on the left", "a small red circle on the left side"]
    vocab, _ = build_vocabulary(refs + ["a red circle on the right"], 1, 12)
    sides = [vocab.encode("a red circle on the left")[1:], vocab.encode("a red circle on the right")[1:]]
    tokens = torch.tensor(sides * 2)                    # image 0's two samples, then image 1's: left, right
    monkeypatch.setattr(scst, "sample_captions", lambda *a: (tokens, torch.zeros(4, requires_grad=True)))
    others = {k: [tokenize(f"a {c} dog runs on the {g}")] for k, (c, g) in enumerate(
        [("brown", "grass"), ("black", "beach"), ("white", "snow"), ("small", "road")])}
    rewarder = reward_references({7: [tokenize(r) for r in refs], 8: [tokenize(r) for r in refs], **others})
    rewards = []
    monkeypatch.setattr(rewarder, "score", lambda key, words, score=rewarder.score: rewards.append(score(key, words))
                        or rewards[-1])
    scst.scst_loss(None, None, [7, 8], rewarder, vocab, 2, 12, flipped=np.array([False, True]))
    as_shown, mirrored = rewards[:2], rewards[2:]
    assert as_shown[0] > as_shown[1]          # the image itself: "left" is right
    assert mirrored[1] > mirrored[0]          # its mirror: "right" is
