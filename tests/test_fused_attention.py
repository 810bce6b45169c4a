"""The fused CPU attention kernels against eager PyTorch (the GPU path): same values, same gradients."""
import pytest
import torch

from captioning.models.decoders import DECODERS, DecoderConfig, ImageFeatures, attention_lstm, fused_attention
from captioning.models.decoders.fused_attention import additive_scores, attention_context

IMAGES, REGIONS, WIDTH = 4, 7, 24
ROWS = torch.tensor([3, 0, 0, 2, 3, 3, 1, 0])        # several captions per image, in any order


def _gradients(fn, tensors, upstream):
    for t in tensors:
        t.grad = None
    out = fn()
    (out * upstream).sum().backward()
    return out.detach(), [t.grad.clone() for t in tensors]


def _eager(monkeypatch):
    monkeypatch.setattr(fused_attention, "fuses", lambda device: False)
    monkeypatch.setattr(attention_lstm, "fuses", lambda device: False)


@pytest.mark.parametrize("rows", [ROWS, None], ids=["image rows", "one row per caption"])
def test_fused_relu_scores_equal_eager_scores_and_gradients(rows, monkeypatch):
    torch.manual_seed(0)
    keys = torch.randn(IMAGES if rows is not None else len(ROWS), REGIONS, WIDTH, requires_grad=True)
    query = torch.randn(len(ROWS), WIDTH, requires_grad=True)
    score = torch.nn.Linear(WIDTH, 1)
    upstream = torch.randn(len(ROWS), REGIONS)
    tensors = [keys, query, score.weight, score.bias]

    def scores():
        return additive_scores(keys, rows, query, score, "relu")
    fused = _gradients(scores, tensors, upstream)
    _eager(monkeypatch)
    eager = _gradients(scores, tensors, upstream)
    torch.testing.assert_close(fused[0], eager[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(fused[1], eager[1]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_fused_context_equals_eager_context_and_gradients(monkeypatch):
    torch.manual_seed(0)
    values = torch.randn(IMAGES, REGIONS, WIDTH, requires_grad=True)
    alpha = torch.softmax(torch.randn(len(ROWS), REGIONS), dim=1).requires_grad_()
    upstream = torch.randn(len(ROWS), WIDTH)

    def context():
        return attention_context(values, ROWS, alpha)
    fused = _gradients(context, [values, alpha], upstream)
    _eager(monkeypatch)
    eager = _gradients(context, [values, alpha], upstream)
    torch.testing.assert_close(fused[0], eager[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(fused[1], eager[1]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_bf16_inputs_get_bf16_gradients_and_float32_scores():
    """Under bf16 autocast the keys and query arrive in bf16: the kernels work in float32 and hand each
    input a gradient of its own dtype, as autograd requires."""
    keys = torch.randn(IMAGES, REGIONS, WIDTH).bfloat16().requires_grad_()
    query = torch.randn(len(ROWS), WIDTH).bfloat16().requires_grad_()
    scores = additive_scores(keys, ROWS, query, torch.nn.Linear(WIDTH, 1), "relu")
    assert scores.dtype == torch.float32
    scores.sum().backward()
    assert keys.grad.dtype == query.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["soft_attention", "bahdanau_gated"])
def test_a_decoder_trains_the_same_with_the_fused_kernels_as_with_eager_pytorch(name, monkeypatch):
    """What a CPU run computes (fused) against what a GPU run computes (eager): same logits and gradients."""
    config = DecoderConfig(vocab_size=20, pooled_dim=WIDTH, grid_channels=WIDTH, embed_dim=8, hidden_dim=16)
    images = ImageFeatures(torch.randn(IMAGES, WIDTH), torch.randn(IMAGES, REGIONS, WIDTH), ROWS)
    inputs = torch.randint(3, 20, (len(ROWS), 6))
    inputs[1, 3:] = 0                                       # captions of different lengths: the batch shrinks
    inputs[4, 2:] = 0

    def train_step():
        torch.manual_seed(0)
        decoder = DECODERS[name](config).eval()
        logits = decoder(images, inputs)
        logits.sum().backward()
        return logits.detach(), [p.grad for p in decoder.parameters() if p.grad is not None]
    fused = train_step()
    _eager(monkeypatch)
    eager = train_step()
    torch.testing.assert_close(fused[0], eager[0], rtol=1e-5, atol=1e-5)
    assert len(fused[1]) == len(eager[1])
    for got, want in zip(fused[1], eager[1]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
