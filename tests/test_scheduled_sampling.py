"""Scheduled sampling: the ramp, what the model is fed, and training with it."""
import pytest
import torch
from test_decoders import VOCAB, _captions
from train_toy import train_toy

from captioning.models.decoders import DECODERS, DecoderConfig, ImageFeatures
from captioning.train.scheduled_sampling import sampling_probability, scheduled_sampling_logits
from captioning.train.validate import greedy_captions


def _decoder(name):
    torch.manual_seed(0)
    config = DecoderConfig(vocab_size=VOCAB, pooled_dim=12, grid_channels=12, embed_dim=8, hidden_dim=16, dropout=0.0)
    return DECODERS[name](config).eval()


def test_the_probability_ramps_from_zero_to_the_maximum_over_the_epochs():
    assert [sampling_probability(0.25, e, 5) for e in range(5)] == [0.0, 0.0625, 0.125, 0.1875, 0.25]
    assert sampling_probability(0.0, 3, 5) == 0.0 and sampling_probability(0.3, 0, 1) == 0.0


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_probability_zero_is_teacher_forcing(name):
    decoder = _decoder(name)
    grid = torch.randn(5, 4, 12)
    feats, inputs = ImageFeatures(grid.mean(1), grid), _captions(5, 8, seed=3)
    with torch.no_grad():
        expected = decoder(feats, inputs)
        got = scheduled_sampling_logits(decoder, feats, inputs, 0.0)
    used = inputs != 0
    torch.testing.assert_close(got[used], expected[used], rtol=1e-5, atol=1e-5)


def test_probability_one_never_feeds_the_reference_words():
    decoder = _decoder("soft_attention")
    grid = torch.randn(5, 4, 12)
    feats, inputs = ImageFeatures(grid.mean(1), grid), _captions(5, 8, seed=3)
    other = inputs.clone()
    other[:, 1:] = torch.where(inputs[:, 1:] > 2, (inputs[:, 1:] + 7) % (VOCAB - 3) + 3, inputs[:, 1:])
    assert not torch.equal(other, inputs)
    with torch.no_grad():
        runs = {}
        for p in (1.0, 0.0):
            runs[p] = [scheduled_sampling_logits(decoder, feats, x, p, torch.Generator().manual_seed(0))
                       for x in (inputs, other)]
    used = inputs != 0
    torch.testing.assert_close(runs[1.0][0][used], runs[1.0][1][used])    # other references, same logits
    assert not torch.allclose(runs[0.0][0][used], runs[0.0][1][used])      # while teacher forcing sees them


def test_training_with_scheduled_sampling_logs_the_ramp_and_learns(tmp_path):
    decoder, result, vocab, val = train_toy(tmp_path, "soft_attention", epochs=5, scheduled_sampling=0.4)
    assert [e["sampling"] for e in result.epoch_log] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    decoder.eval()
    feats = val.features(torch.arange(len(val.ids)).numpy(), "cpu", False, True)
    captions = greedy_captions(decoder, [(val.ids, feats)], vocab, 10)
    right = sum(any(c.split()[-2:] == r.split()[-2:] for r in val.references[i]) for i, c in captions.items() if c)
    assert right >= 0.75 * len(val.ids), captions
