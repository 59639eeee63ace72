"""Bad input: each case raises TypeError or ValueError naming the tensor or
param and the problem, and writes nothing (every destination buffer keeps
its sentinel contents)."""

import ctypes
import math

import numpy as np
import pytest
import torch

import normjit

N, D = 4, 8
ln = normjit.library("norm/layer_norm")
adamw = normjit.library("optim/adamw")


def sentinel(*shape, value=7.0):
    return np.full(shape, value, np.float32)


def ln_args(**over):
    rng = np.random.default_rng(0)
    args = dict(
        x=rng.standard_normal((N, D)).astype(np.float32),
        gamma=np.ones(D, np.float32),
        beta=np.zeros(D, np.float32),
        y=sentinel(N, D),
    )
    args.update(over)
    return args


def fails(kernel, exc, *needles, **args):
    """Calls `kernel(**args)`, expecting `exc` with every needle in the
    message; checks no numpy/torch argument changed."""
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v.clone()) for k, v in args.items() if _is_tensor(v)}
    with pytest.raises(exc) as info:
        kernel(**args)
    msg = str(info.value)
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    for k, v in before.items():
        now = args[k]
        same = np.array_equal(now, v) if isinstance(v, np.ndarray) else torch.equal(now, v)
        assert same, f"`{k}` was written by a failing call"
    return msg


def _is_tensor(v):
    return isinstance(v, np.ndarray) or (isinstance(v, torch.Tensor) and v.device.type == "cpu" and not v.is_sparse)


# -- dtype -----------------------------------------------------------------


def test_wrong_dtype_numpy():
    x = np.ones((N, D), np.float64)
    fails(ln, TypeError, "`x`", "f32[N, D]", "float64", **ln_args(x=x))


def test_wrong_dtype_torch():
    a = ln_args()
    a = {k: torch.from_numpy(v) for k, v in a.items()}
    a["gamma"] = torch.ones(D, dtype=torch.float16)
    fails(ln, TypeError, "`gamma`", "float16", **a)


def test_wrong_dtype_integer_output():
    fails(ln, TypeError, "`y`", "int32", **ln_args(y=np.full((N, D), 7, np.int32)))


# -- layout ----------------------------------------------------------------


def test_non_contiguous_numpy_transpose():
    x = np.ones((D, N), np.float32).T  # shape (N, D), column-major
    fails(ln, ValueError, "`x`", "not contiguous", "np.ascontiguousarray", **ln_args(x=x))


def test_non_contiguous_torch_strided_slice_output():
    base = torch.full((N, 2 * D), 7.0)
    y = base[:, ::2]
    before = base.clone()
    a = {k: torch.from_numpy(v) for k, v in ln_args().items()}
    a["y"] = y
    fails(ln, ValueError, "`y`", "not contiguous", ".contiguous()", **a)
    assert torch.equal(base, before)


# -- device ----------------------------------------------------------------


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class FakeCudaArray:
    """A DLPack producer that reports its (host) memory as `cuda:0`, standing
    in for a CUDA tensor on machines without a GPU. With `device_query`
    False it has no `__dlpack_device__`, so the capsule's own device field
    is what normjit must check (the path torch CUDA tensors take)."""

    def __init__(self, arr, device_query=True):
        self.arr = arr
        self.shape = (ctypes.c_int64 * arr.ndim)(*arr.shape)
        self.managed = _DLManagedTensor()
        t = self.managed.dl_tensor
        t.data = arr.ctypes.data
        t.device = _DLDevice(2, 0)
        t.ndim = arr.ndim
        t.dtype = _DLDataType(2, 32, 1)
        t.shape = ctypes.cast(self.shape, ctypes.POINTER(ctypes.c_int64))
        t.strides = None
        if device_query:
            self.__dlpack_device__ = lambda: (2, 0)

    def __dlpack__(self, stream=None):
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(self.managed), b"dltensor", None)


@pytest.mark.parametrize("device_query", [True, False], ids=["dlpack_device", "capsule_device"])
def test_cuda_tensor(device_query):
    x = FakeCudaArray(np.ones((N, D), np.float32), device_query)
    fails(ln, ValueError, "`x`", "cuda:0", "CPU", **ln_args(x=x))
    if torch.cuda.is_available():  # the real thing too, where there is a GPU
        fails(ln, ValueError, "`x`", "cuda:0", **ln_args(x=torch.ones(N, D, device="cuda")))


def test_meta_tensor():
    a = {k: torch.from_numpy(v) for k, v in ln_args().items()}
    a["x"] = torch.empty(N, D, device="meta")
    fails(ln, ValueError, "`x`", "meta tensor", **a)


def test_sparse_tensor():
    a = {k: torch.from_numpy(v) for k, v in ln_args().items()}
    a["gamma"] = torch.ones(D).to_sparse()
    fails(ln, ValueError, "`gamma`", "layout", "sparse", **a)


# -- shape -----------------------------------------------------------------


def test_wrong_shape_conflicting_dim():
    fails(ln, ValueError, "`gamma`", "9 elements", "expected 8", **ln_args(gamma=np.ones(D + 1, np.float32)))
    # A dim fixed by two shapes that disagree.
    fails(ln, ValueError, "dim `D`", "`x`", "`y`", **ln_args(y=sentinel(N, D + 1)))


def test_wrong_rank():
    fails(ln, ValueError, "`x`", "f32[N, D]", "[32]", **ln_args(x=np.ones(N * D, np.float32)))


def test_wrong_output_shape():
    fails(ln, ValueError, "`y`", "dim `N`", **ln_args(y=sentinel(N + 2, D)))


# -- names -----------------------------------------------------------------


def test_missing_tensor():
    a = ln_args()
    del a["gamma"]
    fails(ln, TypeError, "missing tensor `gamma`", "in f32[D]", **a)


def test_missing_inout_tensor():
    p = sentinel(10)
    fails(adamw, TypeError, "missing tensor `m`", "updated in place", p=p, v=np.zeros(10, np.float32),
          g=np.ones(10, np.float32), t=1)


def test_unknown_argument():
    fails(ln, TypeError, "unexpected keyword argument `gama`", "x, gamma, beta, y", "eps", **ln_args(gama=1))


def test_missing_param_without_default():
    p, m, v = sentinel(10), sentinel(10), sentinel(10)
    fails(adamw, TypeError, "missing param `t`", p=p, m=m, v=v, g=np.ones(10, np.float32))


def test_positional_arguments():
    a = ln_args()
    with pytest.raises(TypeError, match="by keyword"):
        ln(a["x"], a["gamma"], a["beta"])


def test_not_a_tensor():
    fails(ln, TypeError, "`x`", "expected a numpy array or a torch tensor", "list",
          **ln_args(x=[[1.0] * D] * N))


# -- aliasing --------------------------------------------------------------


def test_output_aliases_input():
    a = ln_args()
    a["y"] = a["x"]
    fails(ln, ValueError, "output `y` overlaps `x`", **a)


def test_output_partially_overlaps_input_view():
    buf = sentinel(2 * N, D)
    a = ln_args(x=buf[:N], y=buf[N - 1 : 2 * N - 1])
    fails(ln, ValueError, "overlaps", **a)


def test_inout_tensors_alias_each_other_torch():
    p = torch.full((10,), 7.0)
    fails(adamw, ValueError, "overlaps", p=p, m=p, v=torch.zeros(10), g=torch.ones(10), t=1)


def test_read_only_output():
    y = sentinel(N, D)
    y.flags.writeable = False
    fails(ln, ValueError, "`y`", "read-only", **ln_args(y=y))


# -- params ----------------------------------------------------------------


def test_nan_hyper_parameter():
    fails(ln, ValueError, "`eps`", "NaN", **ln_args(eps=math.nan))


def test_infinite_hyper_parameter_in_an_optimizer_step():
    p, m, v = sentinel(10), sentinel(10), sentinel(10)
    fails(adamw, ValueError, "`lr`", "finite", p=p, m=m, v=v, g=np.ones(10, np.float32), t=1, lr=math.inf)


def test_param_not_a_number():
    fails(ln, TypeError, "`eps`", "must be a number", "str", **ln_args(eps="1e-5"))


def test_bad_seed():
    dropout = normjit.library("reg/dropout")
    seed = next(p.name for p in dropout.signature.params if p.dtype == "u32")
    args = {t.name: (sentinel(3, 5) if t.role != "in" else np.ones((3, 5), np.float32)) for t in dropout.signature.tensors}
    fails(dropout, ValueError, f"`{seed}`", "whole number", **args, **{seed: -1.5})


# -- foreach ---------------------------------------------------------------


def test_foreach_bad_group_writes_no_group():
    ps = [sentinel(5), sentinel(6)]
    ms = [sentinel(5), sentinel(6)]
    vs = [sentinel(5), sentinel(6)]
    gs = [np.ones(5, np.float32), np.ones(7, np.float32)]  # group 1: g too long
    before = [a.copy() for a in ps + ms + vs]
    with pytest.raises(ValueError, match="foreach group 1") as info:
        adamw.foreach(p=ps, m=ms, v=vs, g=gs, t=1)
    assert "`g`" in str(info.value) and "dim `P`" in str(info.value)
    assert all(np.array_equal(a, b) for a, b in zip(ps + ms + vs, before)), "a group ran"


def test_foreach_list_lengths_differ():
    with pytest.raises(ValueError, match="`m` has 1 tensors but `p` has 2"):
        adamw.foreach(p=[sentinel(3), sentinel(3)], m=[sentinel(3)], v=[sentinel(3)], g=[sentinel(3)], t=1)


# -- compilation -----------------------------------------------------------

BAD = "kernel bad {\n  dims N\n  in x: f32[N]\n  out y: f32[N]\n  y = x *\n}\n"


def test_source_that_fails_to_compile_makes_no_kernel(tmp_path):
    k = None
    with pytest.raises(normjit.CompileError) as info:
        k = normjit.compile(BAD, name="bad.nj")
    assert k is None  # no object exists to be called later
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "bad.nj:5:" in msg and "error:" in msg and "^" in msg and "y = x *" in msg
    path = tmp_path / "bad.nj"
    path.write_text(BAD)
    with pytest.raises(normjit.CompileError, match=str(path)):
        normjit.load(path)
    # Nor can one be built around the failure.
    with pytest.raises(TypeError):
        normjit.Kernel(BAD)
