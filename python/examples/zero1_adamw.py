"""ZeRO-1 on torch.distributed with normjit's fused AdamW.

ZeRO stage 1 shards the optimizer state: with W ranks, each rank owns 1/W
of the flattened parameters and keeps AdamW's moments (`exp_avg`,
`exp_avg_sq`) for that shard only. A step is: all-reduce the gradients
(data parallel: each rank saw its part of the batch), run normjit's
``optim/adamw`` pipeline on the rank's shard (parameters, moments,
gradient: one fused pass, in place), all-gather the updated shards so every
rank has the whole model again.

Run it (2 processes on localhost, gloo backend)::

    python python/examples/zero1_adamw.py

It trains a small MLP for 20 steps, checks the parameters against a
single-process ``torch.optim.AdamW`` run on the full batch, and prints each
rank's optimizer memory next to the unsharded optimizer's (halved).
python/tests/test_zero1.py runs the same and asserts both.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import normjit

LR, BETAS, EPS, WD = 1e-2, (0.9, 0.999), 1e-8, 0.05


class ZeroAdamW:
    """AdamW with ZeRO-1 sharding: this rank keeps the moments of its shard
    of the flattened parameters and updates that shard with normjit.

    The model's parameters become views of one flat buffer (so the
    all-gather writes straight into them); the flat length is padded to a
    multiple of the world size.
    """

    def __init__(self, params, lr=LR, betas=BETAS, eps=EPS, weight_decay=WD):
        self.params = [p for p in params]
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.hyper = dict(lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, wd=weight_decay)
        numel = sum(p.numel() for p in self.params)
        self.shard = -(-numel // self.world)
        total = self.shard * self.world
        self.flat = torch.zeros(total)
        self.flat_grad = torch.zeros(total)
        offset = 0
        with torch.no_grad():
            for p in self.params:
                n = p.numel()
                self.flat[offset : offset + n].copy_(p.reshape(-1))
                p.data = self.flat[offset : offset + n].view_as(p)
                offset += n
        self.numel = numel
        lo = self.rank * self.shard
        self.p_shard = self.flat[lo : lo + self.shard].clone()  # this rank's master copy
        self.g_shard = self.flat_grad[lo : lo + self.shard]
        # The sharded optimizer state: 1/world of the moments each.
        self.exp_avg = torch.zeros(self.shard)
        self.exp_avg_sq = torch.zeros(self.shard)
        self.step_count = 0
        self.kernel = normjit.library("optim/adamw")
        self.gather_into = list(self.flat.chunk(self.world))

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def state_bytes(self) -> int:
        """Bytes of optimizer state on this rank."""
        return (self.exp_avg.numel() + self.exp_avg_sq.numel()) * self.exp_avg.element_size()

    @torch.no_grad()
    def step(self):
        offset = 0
        for p in self.params:
            n = p.numel()
            self.flat_grad[offset : offset + n].copy_(p.grad.reshape(-1))
            offset += n
        dist.all_reduce(self.flat_grad)
        self.flat_grad.div_(self.world)
        self.step_count += 1
        self.kernel(p=self.p_shard, m=self.exp_avg, v=self.exp_avg_sq, g=self.g_shard, t=self.step_count, **self.hyper)
        dist.all_gather(self.gather_into, self.p_shard)


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 8))


def make_data(steps):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(64, 16, generator=g), torch.randn(64, 8, generator=g)) for _ in range(steps)]


def _worker(rank, world, port, steps, out_dir):
    torch.set_num_threads(1)
    normjit.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = make_model()
        opt = ZeroAdamW(model.parameters())
        per = 64 // world
        for x, y in make_data(steps):
            opt.zero_grad()
            # Data parallel: this rank's slice of the batch; the mean over
            # ranks of the slice means is the full batch's mean.
            xs, ys = x[rank * per : (rank + 1) * per], y[rank * per : (rank + 1) * per]
            torch.nn.functional.mse_loss(model(xs), ys).backward()
            opt.step()
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        torch.save(
            {"params": flat, "state_bytes": opt.state_bytes(), "numel": opt.numel},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def single_process_reference(steps):
    """torch.optim.AdamW on the full batch: what ZeRO-1 must reproduce."""
    torch.set_num_threads(1)
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    for x, y in make_data(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for k, t in s.items() if k != "step")
    return flat, state


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(steps=20, world=2):
    """Trains with ZeRO-1 on `world` processes; returns the per-rank results
    and the single-process reference (params, optimizer state bytes)."""
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_worker, args=(world, free_port(), steps, d), nprocs=world, join=True)
        ranks = [torch.load(os.path.join(d, f"rank{r}.pt")) for r in range(world)]
    return ranks, single_process_reference(steps)


def main():
    ranks, (ref, ref_state) = run()
    for r, res in enumerate(ranks):
        err = ((res["params"] - ref).abs().max() / ref.abs().max()).item()
        print(
            f"rank {r}: params vs single-process torch.optim.AdamW: max deviation {err:.2e} of the scale; "
            f"optimizer state {res['state_bytes']} bytes vs {ref_state} unsharded "
            f"({res['state_bytes'] / ref_state:.3f}x)"
        )
    same = all(torch.equal(ranks[0]["params"], r["params"]) for r in ranks)
    print(f"all ranks hold the same parameters: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
