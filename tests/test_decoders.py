"""Teacher forcing (the fast training path) against the decoding path, and image-grouped batches."""
import numpy as np
import pytest
import torch

from captioning.models.decoders import DECODERS, DecoderConfig, ImageFeatures
from captioning.train.captions import CaptionPairs, image_grouped_batches

VOCAB, START, END = 30, 1, 2


def _captions(n_captions: int, steps: int, seed: int) -> torch.Tensor:
    """<start> words <end> <pad>... with lengths that differ from caption to caption."""
    g = torch.Generator().manual_seed(seed)
    inputs = torch.zeros((n_captions, steps), dtype=torch.long)
    for i in range(n_captions):
        n = int(torch.randint(1, steps - 1, (1,), generator=g))
        inputs[i, 0] = START
        inputs[i, 1:n + 1] = torch.randint(3, VOCAB, (n,), generator=g)
        inputs[i, n + 1:n + 2] = END
    inputs[0, 1:] = torch.randint(3, VOCAB, (steps - 1,), generator=g)   # one caption fills every step
    return inputs


def _stepped_logits(decoder, features: ImageFeatures, inputs: torch.Tensor) -> torch.Tensor:
    """Logits [B, T, V] from decoding `inputs` one token at a time (the decoding path)."""
    state, stepped = decoder.init_state(features), []
    for t in range(inputs.shape[1]):
        logits, state, _ = decoder.step(inputs[:, t], state)
        stepped.append(logits)
    return torch.stack(stepped, dim=1)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_teacher_forcing_on_shared_image_features_equals_step_by_step_decoding(name):
    torch.manual_seed(0)
    config = DecoderConfig(vocab_size=VOCAB, pooled_dim=12, grid_channels=12, embed_dim=8, hidden_dim=16,
                           num_layers=2 if name == "lstm" else 1, dropout=0.5)
    decoder = DECODERS[name](config).eval()
    images = ImageFeatures(torch.randn(3, 12), torch.randn(3, 5, 12))
    index = torch.tensor([2, 0, 0, 1, 2, 2, 1])                 # several captions per image, any order
    inputs = _captions(len(index), 9, seed=1)
    with torch.no_grad():
        shared = decoder(ImageFeatures(images.pooled, images.grid, index), inputs)
        per_caption = decoder(images.select(index), inputs)
        stepped = _stepped_logits(decoder, images.select(index), inputs)
    used = inputs != 0                                            # positions whose prediction is trained
    torch.testing.assert_close(shared[used], per_caption[used], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared[used], stepped[used], rtol=1e-5, atol=1e-5)


def _next_word_loss(logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), inputs[:, 1:].reshape(-1),
                                             ignore_index=0)


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_teacher_forcing_trains_with_the_gradients_of_step_by_step_decoding(name):
    """The fast training path (shared image work, shrinking batch) must train the model the decoding path
    defines, not just predict the same words."""
    torch.manual_seed(0)
    config = DecoderConfig(vocab_size=VOCAB, pooled_dim=12, grid_channels=12, embed_dim=8, hidden_dim=16,
                           num_layers=2 if name == "lstm" else 1, dropout=0.0)
    decoder = DECODERS[name](config).eval()
    images = ImageFeatures(torch.randn(3, 12), torch.randn(3, 5, 12))
    index = torch.tensor([2, 0, 0, 1, 2, 2, 1])
    inputs = _captions(len(index), 9, seed=1)
    grads = []
    for logits_of in (lambda: decoder(ImageFeatures(images.pooled, images.grid, index), inputs),
                      lambda: _stepped_logits(decoder, images.select(index), inputs)):
        decoder.zero_grad()
        _next_word_loss(logits_of(), inputs).backward()
        grads.append({k: p.grad for k, p in decoder.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for key, expected in grads[1].items():
        torch.testing.assert_close(grads[0][key], expected, rtol=1e-4, atol=1e-6, msg=key)


def test_doubly_stochastic_penalty_counts_only_the_steps_of_each_caption():
    torch.manual_seed(0)
    config = DecoderConfig(vocab_size=VOCAB, pooled_dim=12, grid_channels=12, embed_dim=8, hidden_dim=16, dropout=0.0)
    decoder = DECODERS["soft_attention"](config).train()
    grid = torch.randn(4, 5, 12)
    inputs = _captions(4, 9, seed=2)
    decoder(ImageFeatures(grid.mean(1), grid), inputs)
    coverage = torch.zeros(4, 5)
    with torch.no_grad():
        state = decoder.init_state(ImageFeatures(grid.mean(1), grid))
        for t in range(inputs.shape[1]):
            _, state, alpha = decoder.step(inputs[:, t], state)
            coverage += alpha * (inputs[:, t] != 0).unsqueeze(1)
    expected = ((1 - coverage) ** 2).mean()
    torch.testing.assert_close(decoder.auxiliary_loss().detach(), expected, rtol=1e-5, atol=1e-6)


def _pairs(captions_per_image: list[int]) -> CaptionPairs:
    rows = np.repeat(np.arange(len(captions_per_image)), captions_per_image)
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 15, len(rows))
    return CaptionPairs(rows, np.zeros((len(rows), 15), dtype=np.int64), lengths)


def test_image_grouped_batches_keep_an_images_captions_together_and_cover_every_caption_once():
    pairs = _pairs([5] * 97 + [6, 7, 4])
    batches = image_grouped_batches(pairs, batch_size=20, seed=3, epoch=1)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(pairs)))
    for batch in batches:
        images = set(pairs.rows[batch].tolist())
        assert len(batch) == sum(int((pairs.rows == i).sum()) for i in images)   # no image split across batches
        assert len(images) == 4                                                   # about 20 captions: 4 images
    again = image_grouped_batches(pairs, batch_size=20, seed=3, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))              # a resumed run sees the same order
    other = image_grouped_batches(pairs, batch_size=20, seed=3, epoch=2)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))


def test_each_decoder_name_is_its_own_model():
    assert len(set(DECODERS.values())) == len(DECODERS)


def _two_images_states(name: str, steps: int):
    torch.manual_seed(0)
    config = DecoderConfig(vocab_size=VOCAB, pooled_dim=12, embed_dim=8, hidden_dim=16, num_layers=2, dropout=0.0)
    decoder = DECODERS[name](config).eval()
    images = ImageFeatures(torch.randn(2, 12))
    with torch.no_grad():
        state = decoder.init_state(images)
        tokens, logits = torch.tensor([START, START]), None
        for _ in range(steps):
            logits, state, _ = decoder.step(tokens, state)
            tokens = torch.tensor([5, 5])
    return decoder, state, logits


def test_lstm_starts_every_layer_from_the_image_and_reads_only_words():
    decoder, state, _ = _two_images_states("lstm", steps=0)
    assert decoder.lstm.input_size == decoder.config.embed_dim           # no image input step
    for key in ("h", "c"):
        assert state[key].shape == (2, 2, 16)
        assert not torch.allclose(state[key][0], state[key][1])             # each image its own start, every layer


def test_merge_keeps_the_image_out_of_the_recurrence():
    _, state, logits = _two_images_states("merge", steps=3)
    torch.testing.assert_close(state["h"][0], state["h"][1])               # same words: same language state
    assert not torch.allclose(logits[0], logits[1])                        # the image changes the next word
