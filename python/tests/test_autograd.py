"""normjit.torch.Function: a kernel and its generated backward as one
differentiable PyTorch function, against PyTorch's own autograd.

Tolerances: the forward and every gradient must agree with PyTorch within
rtol 1e-4 / atol 1e-5 on f32 data of order 1 (both sides accumulate in
f32, in different orders; measured differences are around 1e-6).
"""

import pytest
import torch
import torch.nn.functional as F

import normjit
import normjit.torch as njt

RTOL, ATOL = 1e-4, 1e-5


def leaves(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g).requires_grad_() for s in shapes]


def grads_of(loss, tensors):
    for t in tensors:
        t.grad = None
    loss.backward()
    return [t.grad for t in tensors]


@pytest.mark.parametrize("n,d", [(1, 1), (3, 5), (37, 129), (8, 1023)])
def test_layer_norm_matches_torch(n, d):
    f = njt.Function(normjit.library("norm/layer_norm"))
    x, gamma, beta = leaves((n, d), (d,), (d,), seed=n * d)
    dy = torch.randn(n, d, generator=torch.Generator().manual_seed(1))
    y = f(x=x, gamma=gamma, beta=beta, eps=1e-5)
    ours = grads_of((y * dy).sum(), [x, gamma, beta])
    y_ref = F.layer_norm(x, (d,), gamma, beta, 1e-5)
    theirs = grads_of((y_ref * dy).sum(), [x, gamma, beta])
    torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)
    for name, a, b in zip(["x", "gamma", "beta"], ours, theirs):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL, msg=lambda m: f"d{name}: {m}")


def test_rms_norm_matches_torch_autograd():
    f = njt.Function(normjit.library("norm/rms_norm"))
    x, gamma = leaves((33, 257), (257,), seed=3)
    y = f(x=x, gamma=gamma, eps=1e-6)
    ours = grads_of(y.square().sum(), [x, gamma])
    y_ref = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + 1e-6) * gamma
    theirs = grads_of(y_ref.square().sum(), [x, gamma])
    torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)


def test_a_custom_kernel_with_two_outputs():
    # Softplus-gated scaling with a row statistic, and a second output:
    # both reach the loss, so both cotangents flow into the backward.
    src = """
    kernel gated {
      dims N, D
      in x: f32[N, D]
      in w: f32[D]
      out y: f32[N, D]
      out s: f32[N]
      param alpha = 0.5
      m = max(x, D)
      h = log(1 + exp(x - m)) * w + alpha * x
      y = h
      s = sum(h * h, D)
    }
    """
    f = njt.Function(normjit.compile(src))
    x, w = leaves((9, 70), (70,), seed=5)
    y, s = f(x=x, w=w, alpha=0.25)
    ours = grads_of(y.sum() + 0.1 * s.sum(), [x, w])
    m = x.max(dim=1, keepdim=True).values
    y_ref = torch.log(1 + torch.exp(x - m)) * w + 0.25 * x
    s_ref = (y_ref * y_ref).sum(1)
    theirs = grads_of(y_ref.sum() + 0.1 * s_ref.sum(), [x, w])
    torch.testing.assert_close(y, y_ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(s, s_ref, rtol=RTOL, atol=ATOL)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)
    # Only one output used: the other's cotangent is zero.
    ours = grads_of(f(x=x, w=w, alpha=0.25)[1].sum(), [x, w])
    y_ref = torch.log(1 + torch.exp(x - x.max(dim=1, keepdim=True).values)) * w + 0.25 * x
    theirs = grads_of((y_ref * y_ref).sum(1).sum(), [x, w])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=1e-4)


def test_wrt_limits_the_gradients():
    f = njt.Function(normjit.library("norm/layer_norm"), wrt=["x"])
    x, gamma, beta = leaves((4, 16), (16,), (16,), seed=7)
    f(x=x, gamma=gamma, beta=beta).sum().backward()
    assert x.grad is not None and gamma.grad is None and beta.grad is None
    assert "dx" in f.backward_kernel.source and "dgamma" not in f.backward_kernel.source


def test_non_contiguous_inputs_are_accepted():
    f = njt.Function(normjit.library("norm/rms_norm"))
    base, gamma = leaves((64, 32), (64,), seed=9)
    x = base.t()  # [32, 64], not contiguous
    assert not x.is_contiguous()
    f(x=x, gamma=gamma).sum().backward()
    ref = base.detach().clone().requires_grad_()
    xr = ref.t()
    (xr * torch.rsqrt(xr.square().mean(-1, keepdim=True) + 1e-6) * gamma.detach()).sum().backward()
    torch.testing.assert_close(base.grad, ref.grad, rtol=RTOL, atol=ATOL)


def test_bad_uses_raise_clear_errors():
    with pytest.raises(ValueError, match="inout"):
        njt.Function(normjit.library("optim/adamw"))
    with pytest.raises(ValueError, match="nope"):
        njt.Function(normjit.library("norm/layer_norm"), wrt=["nope"])
    f = njt.Function(normjit.library("norm/layer_norm"))
    x, gamma, beta = leaves((2, 3), (3,), (3,))
    with pytest.raises(TypeError, match="beta"):
        f(x=x, gamma=gamma)
    with pytest.raises(TypeError, match="bogus"):
        f(x=x, gamma=gamma, beta=beta, bogus=1.0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        f(x=x.detach().numpy(), gamma=gamma, beta=beta)


def test_library_softmax_and_dyt_match_torch():
    x, = leaves((17, 300), seed=11)
    dy = torch.randn(17, 300, generator=torch.Generator().manual_seed(2))
    f = njt.Function(normjit.library("norm/softmax"))
    ours = grads_of((f(x=x) * dy).sum(), [x])
    theirs = grads_of((F.softmax(x, dim=-1) * dy).sum(), [x])
    torch.testing.assert_close(f(x=x), F.softmax(x, dim=-1), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(ours[0], theirs[0], rtol=RTOL, atol=ATOL)
    g = njt.Function(normjit.library("norm/dyt"))
    x, gamma, beta = leaves((17, 300), (300,), (300,), seed=12)
    ours = grads_of((g(x=x, gamma=gamma, beta=beta, alpha=0.8) * dy).sum(), [x, gamma, beta])
    ref = gamma * torch.tanh(0.8 * x) + beta
    theirs = grads_of((ref * dy).sum(), [x, gamma, beta])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)
