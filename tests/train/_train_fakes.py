"""Tiny seeded datasets and models for the training tests."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.nn import global_max_pool


class Blobs(InMemoryDataset):
    """Point clouds whose class sets the axis scales: easy, seeded, in memory."""

    def __init__(self, per_class=8, num_classes=3, num_points=32, seed=0):
        super().__init__(None)
        g = torch.Generator().manual_seed(seed)
        scales = torch.tensor([[1.0, 0.3, 0.3], [0.3, 1.0, 0.3], [0.3, 0.3, 1.0]])
        data_list = []
        for c in range(num_classes):
            for _ in range(per_class):
                pos = torch.randn(num_points, 3, generator=g) * scales[c % 3]
                data_list.append(Data(pos=pos, y=torch.tensor([c])))
        self.classes = [f"class{c}" for c in range(num_classes)]
        self.data, self.slices = self.collate(data_list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class TinyNet(nn.Module):
    """Per-point MLP, max pool, linear head; BatchNorm and dropout on purpose."""

    name = "tiny"

    def __init__(
        self,
        num_classes=3,
        hidden=16,
        nan_after=None,
        clock=None,
        cost=0.1,
        slow_after=None,
    ):
        super().__init__()
        self.config = {"num_classes": num_classes, "hidden": hidden}
        self.point = nn.Sequential(
            nn.Linear(3, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(hidden, num_classes))
        self.nan_after = nan_after
        self.calls = 0
        self.clock = clock  # a FakeClock advanced by `cost` per forward
        self.cost = cost
        self.slow_after = slow_after  # (training forwards, new cost)

    def forward(self, data):
        if self.slow_after is not None and self.calls >= self.slow_after[0]:
            self.cost = self.slow_after[1]
        if self.clock is not None:
            self.clock.now += self.cost
        h = global_max_pool(self.point(data.pos), data.batch)
        out = self.head(h)
        if self.training:
            self.calls += 1
            if self.nan_after is not None and self.calls > self.nan_after:
                out = out * float("nan")
        return out


class FakeClock:
    """A perf_counter stand-in: time passes only when a model says so."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self):
        return self.now
