"""normjit: JIT-compiled fused normalization and optimizer kernels for numpy and PyTorch.

A kernel is math over named axes in normjit's small IR (``.nj`` text);
normjit fuses it into as few passes over memory as the data dependencies
allow and compiles it with Cranelift for this CPU. From Python::

    import numpy as np, normjit

    ln = normjit.library("norm/layer_norm")        # the pipeline library, by contract name
    x = np.random.rand(256, 1024).astype(np.float32)
    g = np.ones(1024, np.float32); b = np.zeros(1024, np.float32)
    y = ln(x=x, gamma=g, beta=b, eps=1e-5)         # keywords; `y` allocated and returned

    k = normjit.compile(open("my_op.nj").read())   # or normjit.load("my_op.nj")
    k.signature                                    # tensors (role, dtype, dims), params, dims
    print(ln.explain(N=256, D=1024))               # the fused plan
    print(ln.asm(N=256, D=1024))                   # the generated machine code

Calls
    Tensors and params are keyword arguments. Tensors are numpy arrays or
    CPU torch tensors (or any CPU DLPack producer), dense row-major, of the
    declared dtype; they are used in place, never copied. ``inout`` tensors
    are updated in place. ``out`` tensors not given are allocated (torch
    tensors if any argument is one, numpy arrays otherwise) and returned:
    None, one tensor, or a tuple in declaration order. The GIL is released
    while the kernel runs, so Python threads run kernels in parallel.
    ``kernel.foreach(p=[...], g=[...], lr=...)`` runs one call per group of
    list elements (an optimizer step over every parameter).

Zero-copy, and why DLPack
    Every argument is read through DLPack: ``ndarray.__dlpack__()`` for
    numpy and ``torch.utils.dlpack.to_dlpack`` for torch (both C entry
    points; ``Tensor.__dlpack__`` is Python code and costs ~2 µs), and
    ``__dlpack__`` for other producers. The buffer protocol is not in the
    stable ABI before Python 3.11 and torch tensors do not export it;
    ``__array_interface__`` builds a dict per access (~1 µs) and torch lacks
    it for CPU tensors. DLPack gives device, dtype, shape, strides and
    offset in one C struct for both libraries, reports CUDA and meta
    tensors as such, and its capsule keeps the producer's memory alive
    while the kernel runs without the GIL. numpy arrays the legacy capsule
    cannot describe (read-only arrays, ``ml_dtypes.bfloat16``) fall back
    to ``__array_interface__``, also zero-copy.

Errors
    A wrong argument raises TypeError (unknown or missing names, wrong
    dtype, wrong kind of object) or ValueError (shape, contiguity, device,
    aliasing, read-only output, NaN or out-of-range param), naming the
    tensor or param, before anything is written. Bad source raises
    ``CompileError`` (a ValueError) whose message is the rendered
    diagnostics. A kernel normjit cannot lower at a call's sizes raises
    ``UnsupportedError`` (a ValueError) from that call.

``normjit.torch`` holds ``torch.optim`` optimizers (AdamW, Adam, SGD,
ProxL1) that run the library's fused pipelines.
"""

from ._native import (
    CompileError,
    ParamSig,
    Signature,
    TensorSig,
    UnsupportedError,
    __version__,
    Kernel,
    compile,
    get_num_threads,
    library,
    library_names,
    library_source,
    load,
    set_num_threads,
)

__all__ = [
    "CompileError",
    "Kernel",
    "ParamSig",
    "Signature",
    "TensorSig",
    "UnsupportedError",
    "__version__",
    "compile",
    "get_num_threads",
    "library",
    "library_names",
    "library_source",
    "load",
    "set_num_threads",
]
