"""Test session setup: PyTorch on one thread (the tests train tiny models,
for which torch's intra-op threads only add contention on a shared host)."""

import torch

torch.set_num_threads(1)
