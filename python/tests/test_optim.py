"""normjit.torch optimizers against torch.optim.

Each optimizer trains the same small MLP (16-64-64-8, tanh, MSE, 100 steps
of fresh random batches) as the torch.optim class it replaces; the final
parameters must agree within ``TOL`` of the largest parameter's magnitude.
Measured on the dev machine: at most 5.3e-7 (AdamW), 2.6e-7 (Adam,
SGD with momentum), 1.2e-7 (plain SGD); the differences are rounding
(torch's ``lerp`` and ``addcdiv``, and its FMA in ``add_(alpha=)``, against
the pipelines' plain multiply-adds), compounded over 100 steps of training.
State dicts round-trip exactly and load across the two implementations.
"""

import copy

import pytest
import torch

import normjit.torch as njt

TOL = 5e-6  # max |p_normjit - p_torch| / max |p_torch| after 100 steps


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 8)
    )


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def batches(steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(32, 16, generator=g), torch.randn(32, 8, generator=g)) for _ in range(steps)]


def train(model, opt, data):
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model


CASES = [
    ("AdamW", lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1), lambda p: njt.AdamW(p, lr=1e-2, weight_decay=0.1)),
    (
        "AdamW betas/eps",
        lambda p: torch.optim.AdamW(p, lr=3e-3, betas=(0.8, 0.99), eps=1e-6),
        lambda p: njt.AdamW(p, lr=3e-3, betas=(0.8, 0.99), eps=1e-6),
    ),
    ("Adam L2", lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=0.1), lambda p: njt.Adam(p, lr=1e-2, weight_decay=0.1)),
    ("Adam", lambda p: torch.optim.Adam(p, lr=1e-2), lambda p: njt.Adam(p, lr=1e-2)),
    ("SGD", lambda p: torch.optim.SGD(p, lr=0.1), lambda p: njt.SGD(p, lr=0.1)),
    (
        "SGD weight_decay",
        lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.01),
        lambda p: njt.SGD(p, lr=0.1, weight_decay=0.01),
    ),
    (
        "SGD momentum",
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
        lambda p: njt.SGD(p, lr=0.05, momentum=0.9),
    ),
    (
        "SGD momentum dampening wd",
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
        lambda p: njt.SGD(p, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
    ),
    (
        "SGD nesterov",
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda p: njt.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
]


@pytest.mark.parametrize("name,make_torch,make_nj", CASES, ids=[c[0] for c in CASES])
def test_matches_torch_optim_over_100_steps(name, make_torch, make_nj):
    data = batches(100)
    ref = mlp()
    train(ref, make_torch(ref.parameters()), data)
    model = mlp()
    opt = make_nj(model.parameters())
    assert isinstance(opt, torch.optim.Optimizer)
    train(model, opt, data)
    a, b = flat(ref), flat(model)
    assert not torch.equal(a, flat(mlp())), "training moved the parameters"
    err = ((a - b).abs().max() / a.abs().max()).item()
    assert err <= TOL, f"{name}: max deviation {err:.3e} of the parameter scale (tolerance {TOL})"


def test_prox_l1_matches_softshrink_reference_and_makes_exact_zeros():
    torch.manual_seed(3)
    X = torch.randn(200, 50)
    w_true = torch.zeros(50)
    w_true[:5] = torch.tensor([2.0, -3.0, 1.5, 0.5, -1.0])
    y = X @ w_true + 0.01 * torch.randn(200)
    lr, l1 = 0.05, 0.1

    w_ref = torch.zeros(50)
    lin = torch.nn.Linear(50, 1, bias=False)
    with torch.no_grad():
        lin.weight.zero_()
    opt = njt.ProxL1(lin.parameters(), lr=lr, l1=l1)
    for _ in range(100):
        # reference: ISTA with torch ops
        g = X.T @ (X @ w_ref - y) / len(y)
        w_ref = torch.nn.functional.softshrink(w_ref - lr * g, lr * l1)
        opt.zero_grad()
        (0.5 * ((lin(X).squeeze(1) - y) ** 2).mean()).backward()
        opt.step()
    w = lin.weight.detach().squeeze(0)
    err = ((w - w_ref).abs().max() / w_ref.abs().max()).item()
    assert err <= TOL, err
    # The proximal step gives exact zeros on the irrelevant features.
    assert (w[5:] == 0).sum().item() >= 40
    assert torch.equal(w == 0, w_ref == 0)
    assert opt.state_dict()["state"] == {}


@pytest.mark.parametrize(
    "make",
    [
        lambda p: njt.AdamW(p, lr=1e-2, weight_decay=0.1),
        lambda p: njt.Adam(p, lr=1e-2, weight_decay=0.01),
        lambda p: njt.SGD(p, lr=0.05, momentum=0.9, dampening=0.1),
        lambda p: njt.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    ],
    ids=["AdamW", "Adam", "SGD momentum", "SGD nesterov"],
)
def test_state_dict_round_trip_resumes_exactly(make):
    data = batches(20)
    straight = mlp()
    train(straight, make(straight.parameters()), data)

    model = mlp()
    opt = make(model.parameters())
    train(model, opt, data[:10])
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    # The state is torch.optim's: per-parameter tensors, a float32 step.
    st = saved_opt["state"][0]
    if "step" in st:
        assert st["step"].dtype == torch.float32 and st["step"].item() == 10.0
        assert set(st) == {"step", "exp_avg", "exp_avg_sq"}
    else:
        assert set(st) == {"momentum_buffer"}

    resumed = mlp()
    resumed.load_state_dict(saved_model)
    opt2 = make(resumed.parameters())
    opt2.load_state_dict(saved_opt)
    train(resumed, opt2, data[10:])
    assert torch.equal(flat(resumed), flat(straight))


@pytest.mark.parametrize(
    "make_torch,make_nj",
    [
        (lambda p: torch.optim.AdamW(p, lr=1e-2), lambda p: njt.AdamW(p, lr=1e-2)),
        (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), lambda p: njt.SGD(p, lr=0.05, momentum=0.9)),
    ],
    ids=["AdamW", "SGD"],
)
def test_state_dicts_load_across_torch_and_normjit(make_torch, make_nj):
    data = batches(20)
    ref = mlp()
    train(ref, make_torch(ref.parameters()), data)
    for first, second in [(make_torch, make_nj), (make_nj, make_torch)]:
        model = mlp()
        opt = first(model.parameters())
        train(model, opt, data[:10])
        opt2 = second(model.parameters())
        opt2.load_state_dict(opt.state_dict())
        train(model, opt2, data[10:])
        a, b = flat(ref), flat(model)
        assert ((a - b).abs().max() / a.abs().max()).item() <= TOL


def test_param_groups_steps_and_missing_grads():
    # Two groups with their own lr; a parameter without a gradient is
    # skipped (no state); a group added later counts its own steps.
    torch.manual_seed(0)
    a, b, c = (torch.nn.Parameter(torch.randn(7, 3)) for _ in range(3))
    frozen = torch.nn.Parameter(torch.randn(4))
    frozen_before = frozen.detach().clone()
    ra, rb, rc = (torch.nn.Parameter(t.detach().clone()) for t in (a, b, c))
    opt = njt.AdamW([{"params": [a, frozen]}, {"params": [b], "lr": 1e-1}], lr=1e-2)
    ref = torch.optim.AdamW([{"params": [ra]}, {"params": [rb], "lr": 1e-1}], lr=1e-2)
    for step in range(6):
        if step == 3:
            opt.add_param_group({"params": [c], "lr": 5e-2})
            ref.add_param_group({"params": [rc], "lr": 5e-2})
        for p, r in [(a, ra), (b, rb), (c, rc)]:
            g = torch.randn(7, 3)
            p.grad, r.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    for p, r in [(a, ra), (b, rb), (c, rc)]:
        assert ((p - r).abs().max() / r.abs().max()).item() <= TOL
    assert opt.state[a]["step"].item() == 6 and opt.state[c]["step"].item() == 3
    assert frozen not in opt.state
    assert torch.equal(frozen.detach(), frozen_before)  # untouched (no grad)


def test_mixed_step_counts_in_one_group():
    # Parameters of one group whose step counts differ (one was frozen for
    # a while) run at their own t.
    torch.manual_seed(1)
    p, q = torch.nn.Parameter(torch.randn(10)), torch.nn.Parameter(torch.randn(10))
    rp, rq = torch.nn.Parameter(p.detach().clone()), torch.nn.Parameter(q.detach().clone())
    opt, ref = njt.Adam([p, q], lr=1e-2), torch.optim.Adam([rp, rq], lr=1e-2)
    for step in range(5):
        g1, g2 = torch.randn(10), torch.randn(10)
        p.grad, rp.grad = g1.clone(), g1.clone()
        q.grad = g2.clone() if step >= 2 else None
        rq.grad = g2.clone() if step >= 2 else None
        opt.step()
        ref.step()
    assert opt.state[p]["step"].item() == 5 and opt.state[q]["step"].item() == 3
    for x, r in [(p, rp), (q, rq)]:
        assert ((x - r).abs().max() / r.abs().max()).item() <= TOL


def test_closure_and_unsupported_options():
    model = mlp()
    opt = njt.AdamW(model.parameters())
    x, y = batches(1)[0]

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.item() > 0
    for make, flag in [
        (lambda p: njt.AdamW(p, amsgrad=True), "amsgrad"),
        (lambda p: njt.Adam(p, maximize=True), "maximize"),
        (lambda p: njt.SGD(p, lr=0.1, maximize=True), "maximize"),
        (lambda p: njt.AdamW(p, capturable=True), "capturable"),
    ]:
        with pytest.raises(ValueError, match=flag):
            make(mlp().parameters())


def test_step_writes_in_place_and_bumps_autograd_versions():
    model = mlp()
    opt = njt.AdamW(model.parameters(), lr=1e-2)
    w = model[0].weight
    ptr, version = w.data_ptr(), w._version
    x, y = batches(1)[0]
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    m = opt.state[w]["exp_avg"]
    m_ptr = m.data_ptr()
    assert w.data_ptr() == ptr
    assert w._version > version
    before = w.detach().clone()
    opt.step()
    assert w.data_ptr() == ptr and opt.state[w]["exp_avg"] is m and m.data_ptr() == m_ptr
    assert not torch.equal(w.detach(), before)


def test_a_refused_step_changes_nothing():
    model = mlp()
    opt = njt.AdamW(model.parameters(), lr=1e-2)
    x, y = batches(1)[0]
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    before_params = flat(model).clone()
    before_state = copy.deepcopy(opt.state_dict())
    torch.nn.functional.mse_loss(model(x), y).backward()
    g = model[2].weight.grad
    model[2].weight.grad = g.t().contiguous().t()  # same values, column-major: refused
    with pytest.raises(ValueError, match="`g`.*not contiguous"):
        opt.step()
    assert torch.equal(flat(model), before_params)
    after = opt.state_dict()
    for i, st in before_state["state"].items():
        for k, v in st.items():
            assert torch.equal(after["state"][i][k], v), (i, k)
