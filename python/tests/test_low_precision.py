"""bf16 and f16 storage from Python: torch.bfloat16 / torch.float16 tensors,
numpy float16 and ml_dtypes.bfloat16 arrays bind to kernels declared bf16 /
f16 (zero-copy, like f32), outputs are allocated in the declared type, and
a mismatched 16-bit type is refused by name."""

import ml_dtypes
import numpy as np
import pytest
import torch

import normjit

MIXED = """\
kernel mixed {
  dims N
  in  x: f16[N]
  in  s: bf16[N]
  out y: f16[N]
  out z: bf16[N]
  y = x * 3
  z = s + x
}
"""


def test_f16_and_bf16_numpy_and_torch():
    k = normjit.compile(MIXED)
    x = np.arange(6, dtype=np.float16)
    s = np.full(6, 0.5, ml_dtypes.bfloat16)
    y, z = k(x=x, s=s)
    assert y.dtype == np.float16 and z.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(y, x * 3)
    np.testing.assert_array_equal(z.astype(np.float32), np.arange(6) + 0.5)
    yt, zt = k(x=torch.from_numpy(x), s=torch.full((6,), 0.5, dtype=torch.bfloat16))
    assert yt.dtype == torch.float16 and zt.dtype == torch.bfloat16
    assert np.array_equal(yt.numpy(), y) and torch.equal(zt.float(), torch.from_numpy(z.astype(np.float32)))
    zt2 = torch.empty(6, dtype=torch.bfloat16)
    ptr = zt2.data_ptr()
    k(x=torch.from_numpy(x), s=torch.zeros(6, dtype=torch.bfloat16), z=zt2)
    assert zt2.data_ptr() == ptr and torch.equal(zt2.float(), torch.arange(6.0))


def test_mismatched_16_bit_type_is_refused():
    k = normjit.compile(MIXED)
    z = torch.full((4,), 7.0, dtype=torch.bfloat16)
    before = z.clone()
    with pytest.raises(TypeError, match="`s` is declared bf16\\[N\\] but a float16"):
        k(x=torch.zeros(4, dtype=torch.float16), s=torch.zeros(4, dtype=torch.float16), z=z)
    with pytest.raises(TypeError, match="`x` is declared f16\\[N\\] but a bfloat16"):
        k(x=np.zeros(4, ml_dtypes.bfloat16), s=np.zeros(4, ml_dtypes.bfloat16))
    assert torch.equal(z, before)


def test_adamw_master_bf16_params_f32_master():
    k = normjit.library("optim/adamw_master")
    rng = np.random.default_rng(0)
    n = 1000
    master0 = rng.standard_normal(n).astype(np.float32)
    g32 = rng.standard_normal(n).astype(np.float32)
    hyper = dict(t=1, lr=1e-2, wd=0.1)

    master = torch.from_numpy(master0.copy())
    g = torch.from_numpy(g32).to(torch.bfloat16)
    p = k(master=master, m=torch.zeros(n), v=torch.zeros(n), g=g, **hyper)
    assert p.dtype == torch.bfloat16
    ref = torch.nn.Parameter(torch.from_numpy(master0.copy()))
    ref.grad = g.float()
    torch.optim.AdamW([ref], lr=1e-2, weight_decay=0.1).step()
    assert ((master - ref.detach()).abs().max() / ref.detach().abs().max()).item() < 1e-6
    assert torch.equal(p, master.to(torch.bfloat16))  # round to nearest even, as torch

    # The numpy route (ml_dtypes.bfloat16) gives the same bits.
    master_np = master0.copy()
    p_np = k(master=master_np, m=np.zeros(n, np.float32), v=np.zeros(n, np.float32),
             g=g32.astype(ml_dtypes.bfloat16), **hyper)
    assert p_np.dtype == ml_dtypes.bfloat16
    assert np.array_equal(master_np, master.numpy())
    assert np.array_equal(p_np.view(np.uint16), p.view(torch.int16).numpy().view(np.uint16))


def test_with_storage_overrides_a_library_kernel():
    k = normjit.library("norm/rms_norm")
    kb = k.with_storage("x=bf16,y=bf16")
    x = torch.randn(8, 64).to(torch.bfloat16)
    gamma = torch.ones(64)
    y = kb(x=x, gamma=gamma)
    assert y.dtype == torch.bfloat16
    want = (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)).to(torch.bfloat16)
    # Within one bf16 ulp of torch's f32 computation rounded to bf16.
    diff = (y.view(torch.int16).int() - want.view(torch.int16).int()).abs()
    assert int(diff.max()) <= 1
    # The kernel it derives from still takes f32 only.
    with pytest.raises(TypeError, match="`x` is declared f32"):
        k(x=x, gamma=gamma)
    # Stochastic rounding adds its seed param, which every call must pass.
    ks = normjit.library("optim/adamw").with_storage("p=bf16:stochastic(seed),g=bf16")
    assert "seed" in str(ks.signature)
    for spec, msg in [
        ("x=fp8", "unknown dtype `fp8`"),
        ("eps=bf16", "`eps` is a param"),
        ("y=f16:stochastic(s)", "stochastic rounding is for bf16 storage"),
    ]:
        with pytest.raises(ValueError, match=msg):
            k.with_storage(spec)
