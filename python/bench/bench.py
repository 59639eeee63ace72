"""Benchmarks of the Python package against PyTorch, on 1 thread, in one run.

    python python/bench/bench.py            # everything (~2 minutes)
    python python/bench/bench.py --quick    # fewer repetitions
    python python/bench/bench.py --json out.json

What it measures (median time per call over interleaved repetitions; the
ratio is baseline time / normjit time, so > 1 means normjit is faster):

- LayerNorm and RMSNorm (``norm/layer_norm``, ``norm/rms_norm``) against
  ``torch.nn.functional.layer_norm`` / ``rms_norm`` at 8x4096, 256x1024 and
  16384x4096, on torch tensors, each allocating its output (as F does);
  also normjit writing into a preallocated ``y=`` (no allocation).
- One AdamW optimizer step, ``normjit.torch.AdamW`` against
  ``torch.optim.AdamW(fused=True)``, at 2^18 parameters (64 tensors of
  4096) and 2^25 (256 tensors of 131072), gradients set, state initialized.
- The fixed cost of a Python call: LayerNorm at 1x16 with the output
  given, numpy and torch arguments, next to F.layer_norm at 1x16.

Both libraries run on one thread (``torch.set_num_threads(1)``,
``normjit.set_num_threads(1)``). Run it when the machine is otherwise idle
(it warns when a cargo or rustc process is running).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import normjit
import normjit.torch as njt


def busy() -> list[str]:
    try:
        out = subprocess.run(["pgrep", "-a", "-x", "cargo|rustc"], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [line for line in out.splitlines() if line.strip()]


def timeit(fns: dict, reps: int, min_time: float) -> dict:
    """Median seconds per call of each function. Each repetition runs every
    function in turn (interleaved, so slow phases of the host hit all), each
    enough calls to take about `min_time`."""
    inner = {}
    for name, f in fns.items():
        f()
        f()
        n, t = 1, 0.0
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            t = time.perf_counter() - t0
            if t >= min_time or n >= 1 << 20:
                break
            n *= 2 if t < min_time / 8 else max(2, int(min_time / max(t, 1e-9)))
        inner[name] = n
    samples = {name: [] for name in fns}
    for _ in range(reps):
        for name, f in fns.items():
            n = inner[name]
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: statistics.median(s) for name, s in samples.items()}


def norms(reps, min_time, rows):
    ln = normjit.library("norm/layer_norm")
    rms = normjit.library("norm/rms_norm")
    g = torch.Generator().manual_seed(0)
    for n, d in [(8, 4096), (256, 1024), (16384, 4096)]:
        x = torch.randn(n, d, generator=g)
        w = torch.randn(d, generator=g)
        b = torch.randn(d, generator=g)
        y = torch.empty(n, d)
        r = reps if n * d < 1 << 24 else max(5, reps // 3)
        t = timeit(
            {
                "F.layer_norm": lambda: F.layer_norm(x, (d,), w, b, 1e-5),
                "normjit layer_norm": lambda: ln(x=x, gamma=w, beta=b, eps=1e-5),
                "normjit layer_norm y=": lambda: ln(x=x, gamma=w, beta=b, eps=1e-5, y=y),
                "F.rms_norm": lambda: F.rms_norm(x, (d,), w, 1e-6),
                "normjit rms_norm": lambda: rms(x=x, gamma=w, eps=1e-6),
                "normjit rms_norm y=": lambda: rms(x=x, gamma=w, eps=1e-6, y=y),
            },
            r,
            min_time,
        )
        size = f"{n}x{d}"
        for op, base in [("layer_norm", "F.layer_norm"), ("rms_norm", "F.rms_norm")]:
            rows.append(dict(bench=op, size=size, baseline=base, baseline_us=t[base] * 1e6,
                             normjit_us=t[f"normjit {op}"] * 1e6, ratio=t[base] / t[f"normjit {op}"],
                             normjit_out_us=t[f"normjit {op} y="] * 1e6, ratio_out=t[base] / t[f"normjit {op} y="]))


def adamw(reps, min_time, rows):
    for total, tensors in [(1 << 18, 64), (1 << 25, 256)]:
        per = total // tensors
        g = torch.Generator().manual_seed(1)
        # One parameter set per optimizer (each updates its own in place),
        # with the same values and gradients.
        params_t = [torch.nn.Parameter(torch.randn(per, generator=g)) for _ in range(tensors)]
        params_n = [torch.nn.Parameter(p.detach().clone()) for p in params_t]
        for a, b in zip(params_t, params_n):
            a.grad = torch.randn(per, generator=g) * 1e-3
            b.grad = a.grad.clone()
        opt_t = torch.optim.AdamW(params_t, lr=1e-4, weight_decay=0.01, fused=True)
        opt_n = njt.AdamW(params_n, lr=1e-4, weight_decay=0.01)
        r = reps if total < 1 << 24 else max(5, reps // 3)
        t = timeit({"torch fused": opt_t.step, "normjit": opt_n.step}, r, min_time)
        rows.append(dict(bench="adamw step", size=f"2^{total.bit_length() - 1} params / {tensors} tensors",
                         baseline="torch.optim.AdamW(fused=True)", baseline_us=t["torch fused"] * 1e6,
                         normjit_us=t["normjit"] * 1e6, ratio=t["torch fused"] / t["normjit"]))
        # Both ran the same number of steps from the same state: same result.
        err = max(((a - b).abs().max() / a.abs().max()).item() for a, b in zip(params_t, params_n))
        rows[-1]["max_rel_deviation"] = err
        del params_t, params_n, opt_t, opt_n


def call_cost(reps, min_time, rows):
    ln = normjit.library("norm/layer_norm")
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    w, b, y = np.ones(16, np.float32), np.zeros(16, np.float32), np.empty((1, 16), np.float32)
    xt, wt, bt, yt = (torch.from_numpy(a) for a in (x, w, b, y))
    t = timeit(
        {
            "numpy": lambda: ln(x=x, gamma=w, beta=b, y=y),
            "torch": lambda: ln(x=xt, gamma=wt, beta=bt, y=yt),
            "numpy alloc": lambda: ln(x=x, gamma=w, beta=b),
            "torch alloc": lambda: ln(x=xt, gamma=wt, beta=bt),
            "F.layer_norm": lambda: F.layer_norm(xt, (16,), wt, bt),
        },
        reps,
        min_time,
    )
    for k in ["numpy", "torch", "numpy alloc", "torch alloc"]:
        rows.append(dict(bench="python call, layer_norm 1x16", size=k, baseline="F.layer_norm 1x16",
                         baseline_us=t["F.layer_norm"] * 1e6, normjit_us=t[k] * 1e6,
                         ratio=t["F.layer_norm"] / t[k]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    normjit.set_num_threads(1)
    reps, min_time = (7, 0.02) if a.quick else (21, 0.05)
    others = busy()
    if others:
        print("warning: build processes are running; timings will be noisy:", *others, sep="\n  ", file=sys.stderr)
    print(f"normjit {normjit.__version__}, torch {torch.__version__}, numpy {np.__version__}; "
          f"threads: torch {torch.get_num_threads()}, normjit {normjit.get_num_threads()}; "
          f"median of {reps} interleaved repetitions")
    rows: list = []
    norms(reps, min_time, rows)
    adamw(reps, min_time, rows)
    call_cost(reps, min_time, rows)
    print()
    print("| bench | size | baseline | baseline µs | normjit µs | ratio (baseline/normjit) | normjit y= µs | ratio y= |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        extra = (f"{r['normjit_out_us']:.2f} | {r['ratio_out']:.2f}" if "normjit_out_us" in r else "- | -")
        print(f"| {r['bench']} | {r['size']} | {r['baseline']} | {r['baseline_us']:.2f} | {r['normjit_us']:.2f} "
              f"| {r['ratio']:.2f} | {extra} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(rows=rows, busy=others), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
