"""Zero-copy: normjit reads and writes the caller's numpy arrays and torch
tensors in place. Proofs: the data pointer of every written tensor is
unchanged and the update is visible through the caller's object (and
through other views of the same memory); an input is the caller's memory
because binding it as an output too is refused as aliasing (a copy would
live elsewhere); outputs passed in are returned as the same objects."""

import numpy as np
import torch

import normjit

ln = normjit.library("norm/layer_norm")
adamw = normjit.library("optim/adamw")
scale = normjit.compile("kernel scale {\n dims N\n inout x: f32[N]\n param a = 2.0\n x = a * x\n}\n")


def addr(a):
    return a.__array_interface__["data"][0] if isinstance(a, np.ndarray) else a.data_ptr()


def test_numpy_inout_updated_in_place():
    x = np.arange(10, dtype=np.float32)
    ptr = addr(x)
    assert scale(x=x, a=3.0) is None
    assert addr(x) == ptr
    np.testing.assert_array_equal(x, 3 * np.arange(10, dtype=np.float32))


def test_numpy_view_writes_through_to_its_base():
    base = np.ones((6, 10), np.float32)
    view = base[2:4]  # contiguous rows
    scale(x=view, a=5.0)
    assert np.all(base[2:4] == 5) and np.all(base[:2] == 1) and np.all(base[4:] == 1)


def test_torch_inout_updated_in_place_and_shared_with_numpy():
    arr = np.arange(12, dtype=np.float32)
    t = torch.from_numpy(arr)  # shares arr's memory
    ptr = t.data_ptr()
    scale(x=t, a=-1.0)
    assert t.data_ptr() == ptr == addr(arr)
    np.testing.assert_array_equal(arr, -np.arange(12, dtype=np.float32))
    base = torch.zeros(4, 5)
    scale(x=base[1], a=2.0)  # a row view
    base[1] += 1
    scale(x=base[1], a=2.0)
    assert torch.equal(base[1], torch.full((5,), 2.0)) and base[0].abs().sum() == 0


def test_outputs_passed_in_are_written_in_place_and_returned():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 16)).astype(np.float32)
    g, b = np.ones(16, np.float32), np.zeros(16, np.float32)
    y = np.zeros((3, 16), np.float32)
    ptr = addr(y)
    out = ln(x=x, gamma=g, beta=b, y=y)
    assert out is y and addr(y) == ptr
    assert np.abs(y).sum() > 0
    yt = torch.zeros(3, 16)
    tptr = yt.data_ptr()
    out = ln(x=torch.from_numpy(x), gamma=torch.from_numpy(g), beta=torch.from_numpy(b), y=yt)
    assert out is yt and yt.data_ptr() == tptr
    np.testing.assert_array_equal(yt.numpy(), y)


def test_inputs_are_the_callers_memory():
    # If normjit copied an input, binding the input's memory as the output
    # as well could not be detected as aliasing.
    buf = np.ones((3, 8), np.float32)
    x, g, b = buf[:2], np.ones(8, np.float32), np.zeros(8, np.float32)
    for y, name in [(x, "x"), (buf[1:], "x"), (None, "gamma")]:
        if y is None:  # gamma is a row of the output
            y = np.zeros((2, 8), np.float32)
            args = dict(x=x, gamma=y[1], beta=b, y=y)
        else:
            args = dict(x=x, gamma=g, beta=b, y=y)
        try:
            ln(**args)
        except ValueError as e:
            assert f"overlaps `{name}`" in str(e), str(e)
        else:
            raise AssertionError("aliasing an input went unnoticed")
    xt = torch.ones(2, 8)
    try:
        ln(x=xt, gamma=torch.ones(8), beta=torch.zeros(8), y=xt.view(2, 8))
    except ValueError as e:
        assert "overlaps `x`" in str(e)
    else:
        raise AssertionError("aliasing a torch input went unnoticed")
    assert np.all(buf == 1) and torch.all(xt == 1)


def test_read_only_numpy_input_is_read_in_place():
    x = np.arange(16, dtype=np.float32).reshape(2, 8)
    x.flags.writeable = False  # DLPack's legacy capsule refuses it: the fallback reads it
    y = ln(x=x, gamma=np.ones(8, np.float32), beta=np.zeros(8, np.float32))
    ref = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, ref, atol=1e-5)
    try:
        ln(x=x, gamma=np.ones(8, np.float32), beta=np.zeros(8, np.float32), y=x)
    except ValueError as e:
        assert "read-only" in str(e) or "overlaps" in str(e)
    else:
        raise AssertionError


def test_optimizer_state_updated_in_place_with_foreach():
    ps = [torch.randn(5, 3), torch.randn(7)]
    ms = [torch.zeros_like(p) for p in ps]
    vs = [torch.zeros_like(p) for p in ps]
    gs = [torch.ones_like(p) for p in ps]
    ptrs = [t.data_ptr() for t in ps + ms + vs]
    before = [p.clone() for p in ps]
    adamw.foreach(p=ps, m=ms, v=vs, g=gs, t=1, lr=0.1)
    assert [t.data_ptr() for t in ps + ms + vs] == ptrs
    for p, b, m in zip(ps, before, ms):
        assert not torch.equal(p, b)
        assert torch.allclose(m, torch.full_like(m, 0.1))


def test_autograd_version_counter_is_bumped_for_written_torch_tensors():
    t = torch.ones(4)
    v = t._version
    scale(x=t)
    assert t._version > v
    w = torch.ones(4, requires_grad=True)
    y = (w * w).sum()  # saves w for backward
    with torch.no_grad():
        scale(x=w)
    try:
        y.backward()
    except RuntimeError as e:
        assert "modified by an inplace operation" in str(e)
    else:
        raise AssertionError("autograd did not see the in-place write")


def test_allocated_outputs_follow_the_inputs_library():
    x = np.ones((2, 8), np.float32)
    g, b = np.ones(8, np.float32), np.zeros(8, np.float32)
    assert isinstance(ln(x=x, gamma=g, beta=b), np.ndarray)
    y = ln(x=torch.from_numpy(x), gamma=g, beta=b)  # any torch input: torch output
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.shape == (2, 8)
    assert y.device.type == "cpu" and not y.requires_grad
