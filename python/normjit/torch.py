"""normjit.torch: ``torch.optim`` optimizers that run normjit's fused pipelines.

Each optimizer is a subclass of the ``torch.optim`` class it replaces, with
the same constructor, hyper-parameter names, param groups and state
(``state_dict`` / ``load_state_dict`` round-trip, and state dicts load
across the two), and a ``step`` that runs one library pipeline per param
group with foreach (one call over every parameter of the group; the GIL
released, parameters and state updated in place without copies):

==========  ===========================================  =====================
class       replaces                                     pipeline
==========  ===========================================  =====================
AdamW       torch.optim.AdamW                            optim/adamw
Adam        torch.optim.Adam (L2 ``weight_decay``)       optim/adam
            (``decoupled_weight_decay=True``)            optim/adamw
SGD         torch.optim.SGD, momentum > 0                optim/sgd
            ``nesterov=True``                            optim/sgd_nesterov
            momentum = 0, weight_decay = 0               optim/l1_subgrad (lam = 0)
            momentum = 0, weight_decay > 0               optim/sgd (momentum 0, a scratch buffer)
ProxL1      (no torch equivalent) lasso / ISTA           optim/prox_l1
==========  ===========================================  =====================

Numerics follow torch.optim's single-tensor CPU path (its default on the
CPU): the step counter is a float32 tensor per parameter incremented before
the update; bias corrections, ``lr / (1 - beta1**t)``, ``1 - lr * wd`` and
the other hyper-parameter arithmetic are done once per call in float64 and
rounded to float32 where they meet the tensors, as torch does with Python
floats. What differs is rounding: torch updates ``exp_avg`` with ``lerp``
(``m + (1 - beta1) * (g - m)``) where the pipeline computes ``beta1 * m +
(1 - beta1) * g``, and ``addcdiv`` divides before scaling. Over 100 steps of
a small MLP the parameters agree with torch.optim to ~1e-6 relative
(python/tests/test_optim.py states the tolerances).

``Function`` makes any kernel a differentiable PyTorch function: its
forward runs the kernel, its backward the kernel ``normjit grad`` generates
from it (fused, recomputing the forward statistics rather than saving them).

Not supported (they raise ValueError): ``amsgrad``, ``maximize``,
``capturable``, ``differentiable`` — the library has no pipeline for them.
``foreach`` and ``fused`` are accepted and ignored: normjit always runs its
fused pipeline over each group. SGD's first step sets the momentum buffer to
the gradient (torch's convention) by running the pipeline on a zeroed buffer
with ``dampening = 0``. Parameters, gradients and state must be dense CPU
float32 tensors (the pipelines' dtype).
"""

from __future__ import annotations

import torch

import normjit

from . import _native

__all__ = ["AdamW", "Adam", "SGD", "ProxL1", "Function"]

_KERNELS: dict = {}


def _kernel(name: str) -> normjit.Kernel:
    """The library pipeline `name`, compiled once per process."""
    k = _KERNELS.get(name)
    if k is None:
        k = _KERNELS[name] = normjit.library(name)
    return k


def _refuse(cls: str, **flags: bool) -> None:
    for name, value in flags.items():
        if value:
            raise ValueError(f"normjit.torch.{cls} does not support {name}=True (the library has no pipeline for it)")


def _scalar_dtype() -> torch.dtype:
    # torch.optim's `_get_scalar_dtype()`: the dtype of `state["step"]`.
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _check_grad(cls: str, g: torch.Tensor) -> None:
    if g.is_sparse:
        raise RuntimeError(f"normjit.torch.{cls} does not support sparse gradients")


def _foreach_by_step(kernel: normjit.Kernel, steps: list, tensors: dict, params: dict) -> None:
    """One foreach call per distinct step value (usually one)."""
    t0 = steps[0]
    if steps.count(t0) == len(steps):
        kernel.foreach(**tensors, **params, t=t0)
        return
    by_step: dict = {}
    for i, t in enumerate(steps):
        by_step.setdefault(t, []).append(i)
    for t, idx in by_step.items():
        kernel.foreach(**{n: [lst[i] for i in idx] for n, lst in tensors.items()}, **params, t=t)


def _adam_step(opt: torch.optim.Optimizer, cls: str, group: dict, decoupled: bool) -> None:
    params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
    state = opt.state
    for p in group["params"]:
        g = p.grad
        if g is None:
            continue
        st = state[p]
        if len(st) == 0:
            _check_grad(cls, g)
            st["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        params.append(p)
        grads.append(g)
        exp_avgs.append(st["exp_avg"])
        exp_avg_sqs.append(st["exp_avg_sq"])
        steps.append(st["step"])
    if not params:
        return
    beta1, beta2 = group["betas"]
    hyper = dict(
        lr=float(group["lr"]),
        beta1=float(beta1),
        beta2=float(beta2),
        eps=float(group["eps"]),
        wd=float(group["weight_decay"]),
    )
    kernel = _kernel("optim/adamw" if decoupled else "optim/adam")
    ts = _native._increment_steps(steps)
    try:
        _foreach_by_step(kernel, ts, dict(p=params, m=exp_avgs, v=exp_avg_sqs, g=grads), hyper)
    except BaseException:
        # A refused call wrote nothing; undo the step counts too.
        _native._increment_steps(steps, -1.0)
        raise


class _FusedStep:
    """``step()`` of the optimizers below: the closure, then one foreach
    call of a fused pipeline per param group (``_group_step``)."""

    @torch.no_grad()
    def step(self, closure=None):
        """Performs one optimization step (one foreach call per param group)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._group_step(group)
        return loss


class AdamW(_FusedStep, torch.optim.AdamW):
    """AdamW (decoupled weight decay) running normjit's ``optim/adamw`` pipeline.

    Same constructor and state as :class:`torch.optim.AdamW`; ``amsgrad``,
    ``maximize``, ``capturable`` and ``differentiable`` are not supported,
    ``foreach`` and ``fused`` are ignored.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
        foreach=None,
        capturable=False,
        differentiable=False,
        fused=None,
    ):
        _refuse("AdamW", amsgrad=amsgrad, maximize=maximize, capturable=capturable, differentiable=differentiable)
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach)

    def _group_step(self, group):
        _refuse("AdamW", amsgrad=group.get("amsgrad", False), maximize=group.get("maximize", False))
        _adam_step(self, "AdamW", group, decoupled=True)


class Adam(_FusedStep, torch.optim.Adam):
    """Adam running normjit's ``optim/adam`` pipeline (L2 ``weight_decay``
    added to the gradient), or ``optim/adamw`` with
    ``decoupled_weight_decay=True`` (on torch versions that have it).

    Same constructor and state as :class:`torch.optim.Adam`; ``amsgrad``,
    ``maximize``, ``capturable`` and ``differentiable`` are not supported,
    ``foreach`` and ``fused`` are ignored.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        amsgrad=False,
        *,
        foreach=None,
        maximize=False,
        capturable=False,
        differentiable=False,
        fused=None,
        decoupled_weight_decay=False,
    ):
        _refuse("Adam", amsgrad=amsgrad, maximize=maximize, capturable=capturable, differentiable=differentiable)
        kw = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach)
        if decoupled_weight_decay:
            kw["decoupled_weight_decay"] = True
        super().__init__(params, **kw)

    def _group_step(self, group):
        _refuse("Adam", amsgrad=group.get("amsgrad", False), maximize=group.get("maximize", False))
        _adam_step(self, "Adam", group, decoupled=bool(group.get("decoupled_weight_decay", False)))


class SGD(_FusedStep, torch.optim.SGD):
    """SGD with momentum, Nesterov momentum, dampening and L2 weight decay,
    running normjit's ``optim/sgd`` / ``optim/sgd_nesterov`` pipelines.

    Same constructor and state (``momentum_buffer``) as
    :class:`torch.optim.SGD`. With ``momentum=0`` torch keeps no buffer and
    neither does this class; the library has no momentum-free SGD pipeline,
    so plain SGD runs ``optim/l1_subgrad`` with ``lam=0`` (the same update),
    and plain SGD with weight decay runs ``optim/sgd`` with ``momentum=0``
    on a scratch buffer per parameter (kept outside the state dict).
    ``maximize`` and ``differentiable`` are not supported; ``foreach`` and
    ``fused`` are ignored.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0,
        dampening=0,
        weight_decay=0,
        nesterov=False,
        *,
        maximize=False,
        foreach=None,
        differentiable=False,
        fused=None,
    ):
        _refuse("SGD", maximize=maximize, differentiable=differentiable)
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            foreach=foreach,
        )
        self._scratch: dict = {}

    def _group_step(self, group):
        _refuse("SGD", maximize=group.get("maximize", False))
        params, grads = [], []
        for p in group["params"]:
            if p.grad is not None:
                _check_grad("SGD", p.grad)
                params.append(p)
                grads.append(p.grad)
        if not params:
            return
        lr = float(group["lr"])
        momentum = float(group["momentum"])
        dampening = float(group["dampening"])
        wd = float(group["weight_decay"])
        if momentum == 0:
            if wd == 0:
                _kernel("optim/l1_subgrad").foreach(p=params, g=grads, lr=lr, lam=0.0)
            else:
                bufs = [self._scratch_for(p) for p in params]
                _kernel("optim/sgd").foreach(
                    p=params, buf=bufs, g=grads, lr=lr, momentum=0.0, dampening=0.0, wd=wd
                )
            return
        kernel = _kernel("optim/sgd_nesterov" if group["nesterov"] else "optim/sgd")
        old = ([], [], [])
        new = ([], [], [])
        for p, g in zip(params, grads):
            st = self.state[p]
            buf = st.get("momentum_buffer")
            if buf is None:
                # torch's first step sets buf = grad (+ wd * p): the
                # pipeline on a zeroed buffer with no dampening.
                buf = st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                dst = new
            else:
                dst = old
            dst[0].append(p)
            dst[1].append(buf)
            dst[2].append(g)
        if old[0]:
            kernel.foreach(p=old[0], buf=old[1], g=old[2], lr=lr, momentum=momentum, dampening=dampening, wd=wd)
        if new[0]:
            kernel.foreach(p=new[0], buf=new[1], g=new[2], lr=lr, momentum=momentum, dampening=0.0, wd=wd)

    def _scratch_for(self, p: torch.Tensor) -> torch.Tensor:
        b = self._scratch.get(p)
        if b is None or b.shape != p.shape:
            # Zeroed: the pipeline reads it (times momentum 0), and 0 * NaN
            # from uninitialized memory would be NaN.
            b = self._scratch[p] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        return b


class ProxL1(_FusedStep, torch.optim.Optimizer):
    """Proximal gradient descent for an L1 penalty (lasso, ISTA), running
    normjit's ``optim/prox_l1`` pipeline.

    Minimizes ``loss(p) + l1 * sum(|p|)`` with steps
    ``p <- softshrink(p - lr * grad, lr * l1)``: a gradient step on the loss,
    then the exact proximal step of the penalty, which sets small weights to
    exactly zero (a subgradient step on ``l1 * |p|`` would only make them
    oscillate around zero). PyTorch has no L1 optimizer; ``lr`` is torch's
    name, ``l1`` is the penalty weight (threshold ``lr * l1`` per step). It
    keeps no state.
    """

    def __init__(self, params, lr=1e-3, l1=1e-4):
        if not 0.0 <= float(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= float(l1):
            raise ValueError(f"Invalid l1 value: {l1}")
        super().__init__(params, dict(lr=lr, l1=l1))

    def _group_step(self, group):
        params, grads = [], []
        for p in group["params"]:
            if p.grad is not None:
                _check_grad("ProxL1", p.grad)
                params.append(p)
                grads.append(p.grad)
        if params:
            _kernel("optim/prox_l1").foreach(p=params, g=grads, lr=float(group["lr"]), lam=float(group["l1"]))


class Function:
    """A kernel as a differentiable function of PyTorch tensors.

    ``f = normjit.torch.Function(normjit.library("norm/layer_norm"))`` is
    called like the kernel, with keyword arguments (``f(x=x, gamma=g,
    beta=b, eps=1e-5)``), and returns its ``out`` tensors (one tensor, or a
    tuple in signature order). Autograd records the call: ``backward``
    runs the kernel's generated backward (``kernel.grad(wrt)``, the same
    kernel ``normjit grad`` prints), which recomputes the forward's
    statistics instead of saving them, so the forward saves only its
    inputs. ``wrt`` (default: every ``in`` tensor) names the tensors that
    get gradients; the others get None. Params are hyper-parameters, not
    differentiated.

    Inputs that are not contiguous are made contiguous (a copy) first, as
    PyTorch's own functions accept them. A kernel with ``inout`` tensors
    (an optimizer step) is not differentiable and raises ValueError.
    """

    def __init__(self, kernel: normjit.Kernel, wrt=None):
        sig = kernel.signature
        inout = [t.name for t in sig.tensors if t.role == "inout"]
        if inout:
            raise ValueError(
                f"{sig.name}: inout tensors ({', '.join(inout)}) make it a state update, not a "
                "differentiable function"
            )
        self._ins = [t.name for t in sig.tensors if t.role == "in"]
        self._outs = [t.name for t in sig.tensors if t.role == "out"]
        self._params = {p.name for p in sig.params}
        self._wrt = list(self._ins if wrt is None else wrt)
        self.forward_kernel = kernel
        # Raises ValueError naming the problem (unknown or non-`in` wrt).
        self.backward_kernel = kernel.grad(self._wrt)
        bsig = self.backward_kernel.signature
        bins = [t.name for t in bsig.tensors if t.role == "in"]
        # The backward takes the forward's inputs, then one cotangent per
        # output (in output order), and returns the gradients in wrt order.
        self._cotangents = bins[len(self._ins) :]
        self._grads = [t.name for t in bsig.tensors if t.role == "out"]
        if bins[: len(self._ins)] != self._ins or len(self._cotangents) != len(self._outs):
            raise RuntimeError(f"internal error (a normjit bug): unexpected backward signature of {sig.name}")

    def __repr__(self) -> str:
        return f"normjit.torch.Function({self.forward_kernel.name}, wrt={self._wrt})"

    def __call__(self, **kwargs):
        name = self.forward_kernel.name
        missing = [n for n in self._ins if n not in kwargs]
        if missing:
            raise TypeError(f"{name}: missing tensor argument(s): {', '.join(missing)}")
        unknown = [k for k in kwargs if k not in self._ins and k not in self._params]
        if unknown:
            raise TypeError(
                f"{name}: unknown argument(s): {', '.join(unknown)} (a Function takes the kernel's in "
                "tensors and params; its outputs are returned)"
            )
        inputs = []
        for n in self._ins:
            t = kwargs[n]
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: `{n}` must be a torch.Tensor, got {type(t).__name__}")
            inputs.append(t)
        params = {k: v for k, v in kwargs.items() if k in self._params}
        outs = _KernelFunction.apply(self, params, *inputs)
        return outs[0] if len(outs) == 1 else outs


class _KernelFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn: Function, params: dict, *inputs):
        args = {n: t.contiguous() for n, t in zip(fn._ins, inputs)}
        out = fn.forward_kernel(**args, **params)
        outs = out if isinstance(out, tuple) else (out,)
        ctx.fn, ctx.params = fn, params
        ctx.save_for_backward(*args.values())
        ctx.out_meta = [(o.shape, o.dtype) for o in outs]
        return outs

    @staticmethod
    def backward(ctx, *cotangents):
        fn = ctx.fn
        inputs = ctx.saved_tensors
        args = dict(zip(fn._ins, inputs))
        for name, g, (shape, dtype) in zip(fn._cotangents, cotangents, ctx.out_meta):
            # An output that did not reach the loss has a zero cotangent.
            args[name] = torch.zeros(shape, dtype=dtype) if g is None else g.contiguous()
        out = fn.backward_kernel(**args, **ctx.params)
        grads = dict(zip(fn._wrt, out if isinstance(out, tuple) else (out,)))
        result = [None, None]
        for i, n in enumerate(fn._ins):
            result.append(grads.get(n) if ctx.needs_input_grad[2 + i] else None)
        return tuple(result)
