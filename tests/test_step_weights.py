"""StepWeight: one weight gradient formed after all steps must equal autograd's per-step sums."""
import torch
from torch.nn import functional as F

from captioning.models.decoders.step_weights import StepWeight


def _recurrence(product, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A shrinking-batch recurrence like the decoders': h reads itself through the weight at each step."""
    outputs = []
    for t, n in enumerate([6, 6, 4, 4, 2]):
        h = torch.tanh(product(h[:n]) + x[t, :n])
        outputs.append(h)
    return torch.cat(outputs).square().sum()


def _grads(weight, h0, x, use_step_weight: bool, autocast: bool = False):
    weight, h0 = weight.clone().requires_grad_(), h0.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        product = StepWeight(weight) if use_step_weight else (lambda h: F.linear(h, weight))
        loss = _recurrence(product, h0, x)
    loss.backward()
    return weight.grad, h0.grad


def test_the_weight_and_input_gradients_equal_autograds_per_step_products():
    torch.manual_seed(0)
    weight, h0, x = torch.randn(8, 8) * 0.3, torch.randn(6, 8), torch.randn(5, 6, 8)
    for expected, got in zip(_grads(weight, h0, x, False), _grads(weight, h0, x, True)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_under_bf16_autocast_the_steps_run_in_bf16_and_the_weight_gets_a_float32_gradient():
    torch.manual_seed(0)
    weight, h0, x = torch.randn(8, 8) * 0.3, torch.randn(6, 8), torch.randn(5, 6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert StepWeight(weight.requires_grad_())(h0).dtype == torch.bfloat16
    weight = weight.detach()
    got, expected = _grads(weight, h0, x, True, autocast=True), _grads(weight, h0, x, False, autocast=True)
    assert got[0].dtype == torch.float32
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


def test_under_no_grad_it_is_the_plain_product_and_builds_no_graph():
    torch.manual_seed(0)
    weight, h0 = torch.randn(8, 8), torch.randn(6, 8)
    with torch.no_grad():
        out = StepWeight(weight.clone().requires_grad_())(h0)
    assert not out.requires_grad
    torch.testing.assert_close(out, h0 @ weight.t())
