"""The Python API: where kernels come from (source text, file, library),
signatures, explain/asm, calls with keywords (defaults, allocation, return
values), foreach, threads; results against numpy / torch references."""

import math

import numpy as np
import pytest
import torch

import normjit

SCALE_ADD = """\
# two outputs, a param without default
kernel scale_add {
  dims N
  in  x: f32[N]
  in  y: f32[N]
  out s: f32[N]
  out d: f32[N]
  param a, b = 1.0
  s = a * x + b * y
  d = a * x - b * y
}
"""


def test_library_names_and_sources():
    names = normjit.library_names()
    for n in ["norm/layer_norm", "norm/rms_norm", "optim/adamw", "optim/adam", "optim/sgd", "optim/prox_l1"]:
        assert n in names
    assert names == sorted(names)
    src = normjit.library_source("norm/layer_norm")
    assert "kernel layer_norm" in src and "PyTorch" in src  # comments kept
    with pytest.raises(ValueError, match="did you mean norm/layer_norm"):
        normjit.library("layer_norm")


def test_library_kernel_signature():
    ln = normjit.library("norm/layer_norm")
    assert ln.name == "layer_norm" and ln.origin == "library:norm/layer_norm"
    sig = ln.signature
    assert isinstance(sig, normjit.Signature)
    assert sig.name == "layer_norm" and sig.dims == ["N", "D"]
    assert [(t.name, t.role, t.dtype, t.dims) for t in sig.tensors] == [
        ("x", "in", "f32", ["N", "D"]),
        ("gamma", "in", "f32", ["D"]),
        ("beta", "in", "f32", ["D"]),
        ("y", "out", "f32", ["N", "D"]),
    ]
    assert [(p.name, p.dtype, p.default) for p in sig.params] == [("eps", "f32", 1e-5)]
    assert sig.outputs == ["y"]
    assert "out y: f32[N, D]" in repr(sig)
    adamw = normjit.library("optim/adamw").signature
    assert [t.role for t in adamw.tensors] == ["inout", "inout", "inout", "in"]
    assert {p.name: p.default for p in adamw.params}["t"] is None


def test_compile_from_text_and_file(tmp_path):
    k = normjit.compile(SCALE_ADD)
    assert k.origin == "<source>" and k.source == SCALE_ADD
    assert "kernel scale_add" in k.ir and "#" not in k.ir  # printed IR, no comments
    path = tmp_path / "scale_add.nj"
    path.write_text(SCALE_ADD)
    k2 = normjit.load(path)
    assert k2.origin == str(path) and k2.source == SCALE_ADD
    with pytest.raises(FileNotFoundError):
        normjit.load(tmp_path / "missing.nj")
    x, y = np.arange(5, dtype=np.float32), np.ones(5, np.float32)
    for kernel in (k, k2):
        s, d = kernel(x=x, y=y, a=2.0)  # two outputs: a tuple in declaration order
        np.testing.assert_array_equal(s, 2 * x + 1)
        np.testing.assert_array_equal(d, 2 * x - 1)
    s = np.empty(5, np.float32)
    out = k(x=x, y=y, a=3.0, b=0.5, s=s)  # one given, one allocated
    assert out[0] is s and isinstance(out[1], np.ndarray)
    np.testing.assert_array_equal(out[1], 3 * x - 0.5)


def test_inout_only_kernel_returns_none():
    k = normjit.compile("kernel twice {\n dims N\n inout x: f32[N]\n x = 2 * x\n}\n")
    x = np.ones(3, np.float32)
    assert k(x=x) is None and np.all(x == 2)


def test_layer_norm_matches_numpy_and_torch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((33, 1000)).astype(np.float32) * 3 + 1
    g = rng.standard_normal(1000).astype(np.float32)
    b = rng.standard_normal(1000).astype(np.float32)
    ln = normjit.library("norm/layer_norm")
    y = ln(x=x, gamma=g, beta=b, eps=1e-5)
    xd = x.astype(np.float64)
    ref = (xd - xd.mean(1, keepdims=True)) / np.sqrt(xd.var(1, keepdims=True) + 1e-5) * g + b
    np.testing.assert_allclose(y, ref, atol=2e-5, rtol=1e-5)
    yt = ln(x=torch.from_numpy(x), gamma=torch.from_numpy(g), beta=torch.from_numpy(b))
    assert np.array_equal(yt.numpy(), y)  # one engine whatever the container
    tf = torch.nn.functional.layer_norm(torch.from_numpy(x), (1000,), torch.from_numpy(g), torch.from_numpy(b), 1e-5)
    torch.testing.assert_close(yt, tf, atol=2e-5, rtol=1e-5)


def test_rms_norm_matches_torch():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((64, 512)).astype(np.float32))
    g = torch.from_numpy(rng.standard_normal(512).astype(np.float32))
    y = normjit.library("norm/rms_norm")(x=x, gamma=g, eps=1e-6)
    torch.testing.assert_close(y, torch.nn.functional.rms_norm(x, (512,), g, 1e-6), atol=1e-5, rtol=1e-5)


def test_one_dim_tensors_read_flat():
    # A tensor declared with one dim takes any contiguous array of the
    # right length (an optimizer's parameters, whatever their shape).
    sgd = normjit.library("optim/sgd")
    p = np.ones((3, 4), np.float32)
    buf = np.zeros((3, 4), np.float32)
    sgd(p=p, buf=buf, g=np.ones(12, np.float32), lr=0.5, momentum=0.0)
    assert p.shape == (3, 4) and np.all(p == 0.5) and np.all(buf == 1)


def test_foreach_equals_separate_calls():
    adamw = normjit.library("optim/adamw")
    rng = np.random.default_rng(2)
    shapes = [(7, 3), (100,), (1,), (64, 64)]
    groups = [
        dict(
            p=rng.standard_normal(s).astype(np.float32),
            m=rng.standard_normal(s).astype(np.float32),
            v=np.abs(rng.standard_normal(s)).astype(np.float32),
            g=rng.standard_normal(s).astype(np.float32),
        )
        for s in shapes
    ]
    sep = [{k: v.copy() for k, v in gr.items()} for gr in groups]
    for gr in sep:
        adamw(**gr, t=5, lr=1e-2, wd=0.1)
    lists = {k: [gr[k] for gr in groups] for k in "pmvg"}
    assert adamw.foreach(**lists, t=5, lr=1e-2, wd=0.1) is None
    for a, b in zip(groups, sep):
        for k in "pmv":
            assert np.array_equal(a[k], b[k])
    adamw.foreach(p=[], m=[], v=[], g=[], t=1)  # nothing to do


def test_explain_and_asm():
    ln = normjit.library("norm/layer_norm")
    plan = ln.explain(N=256, D=1024)
    assert plan.startswith("plan layer_norm [N=256, D=1024]") and "phase" in plan
    asm = ln.asm(N=256, D=1024)
    assert asm.startswith("; kernel layer_norm for") and "=====" in asm
    clif = ln.asm(N=4, D=8, clif=True)
    assert "function" in clif and len(clif) > len(ln.asm(N=4, D=8))
    with pytest.raises(TypeError, match="missing D"):
        ln.explain(N=4)
    with pytest.raises(TypeError, match="unexpected keyword argument `M`"):
        ln.explain(N=4, D=4, M=3)


def test_threads_setting_does_not_change_results():
    n0 = normjit.get_num_threads()
    assert n0 >= 1
    rng = np.random.default_rng(3)
    x = rng.standard_normal((512, 4096)).astype(np.float32)
    g, b = np.ones(4096, np.float32), np.zeros(4096, np.float32)
    ln = normjit.library("norm/layer_norm")
    outs = []
    try:
        for n in (1, 2, 3, n0):
            normjit.set_num_threads(n)
            assert normjit.get_num_threads() == n
            outs.append(ln(x=x, gamma=g, beta=b))
        with pytest.raises(ValueError):
            normjit.set_num_threads(0)
    finally:
        normjit.set_num_threads(n0)
    assert all(np.array_equal(o, outs[0]) for o in outs)


def _inputs(kernel, kind, seed):
    """Positive, well-scaled inputs at small sizes for any kernel."""
    sizes = {d: 3 + i for i, d in enumerate(kernel.signature.dims)}
    rng = np.random.default_rng(seed)
    args = {}
    for t in kernel.signature.tensors:
        a = rng.uniform(0.5, 1.5, [sizes[d] for d in t.dims]).astype(np.float32)
        args[t.name] = torch.from_numpy(a) if kind == "torch" else a
    for p in kernel.signature.params:
        if p.default is None:
            args[p.name] = 1.0 if p.dtype == "f32" else 7
    return args


@pytest.mark.parametrize("name", normjit.library_names())
def test_every_library_pipeline_runs_on_numpy_and_torch(name):
    k = normjit.library(name)
    if any(t.dtype != "f32" for t in k.signature.tensors):
        # Low-precision pipelines: numpy has no bfloat16, torch does.
        a = _inputs_lowp(k)
        k(**a)
        return
    a, b = _inputs(k, "numpy", 0), _inputs(k, "torch", 0)
    ra, rb = k(**a), k(**b)
    for t in k.signature.tensors:
        if t.role != "in":
            x = a[t.name] if t.role == "inout" else (ra if not isinstance(ra, tuple) else ra[0])
            y = b[t.name] if t.role == "inout" else (rb if not isinstance(rb, tuple) else rb[0])
            x = np.asarray(x)
            y = y.numpy()
            assert np.all(np.isfinite(x)), (name, t.name)
            assert np.array_equal(x, y), (name, t.name)


def _inputs_lowp(k):
    dt = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
    sizes = {d: 3 + i for i, d in enumerate(k.signature.dims)}
    args = {}
    for t in k.signature.tensors:
        args[t.name] = (torch.rand([sizes[d] for d in t.dims]) + 0.5).to(dt[t.dtype])
    for p in k.signature.params:
        if p.default is None:
            args[p.name] = 1.0 if p.dtype == "f32" else 7
    return args


def test_nan_is_data_not_an_error():
    # NaN in a tensor is data (propagates); NaN in a param is refused.
    x = np.array([[1.0, math.nan, 3.0, 4.0]], np.float32)
    y = normjit.library("norm/layer_norm")(x=x, gamma=np.ones(4, np.float32), beta=np.zeros(4, np.float32))
    assert np.all(np.isnan(y))
