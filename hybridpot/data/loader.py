"""Batches for one rank of a (possibly multi-process) run, from memory or from disk.

:class:`ShardedLoader` cuts the data set into GLOBAL batches of ``batch_size x
world_size`` structures, in the order of :class:`hybridpot.data.dataset.GraphLoader`
(epoch ``e`` shuffled by a generator seeded with ``seed + e``), and gives rank ``r`` the
``r``-th contiguous slice of ``batch_size`` structures of each global batch. Rank 0's
slice followed by rank 1's ... is exactly the batch one process with ``batch_size x
world_size`` would take, which is what makes K ranks reproduce one process step by step.

When a short last global batch leaves a rank nothing, that rank gets the global batch's
first structure with loss weight 0: it takes part in the gradient sum with an exact zero
(every rank must run the same collectives) and is not counted.

The data set is any sequence of one-structure :class:`AtomicGraph` (a list, or a
:class:`hybridpot.data.packed.PackedDataset` read on demand). With ``num_workers > 0``
the graphs are read and batched by worker processes (``torch.utils.data.DataLoader``),
so a data set larger than memory streams from disk while the model trains.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch

from .. import keys
from .graph import AtomicGraph, batch_graphs


@dataclass
class Batch:
    """One rank's part of a global batch.

    Attributes:
        graph: this rank's structures, batched (a weight-0 stand-in when it has none).
        num_global: structures in the global batch (all ranks together).
        num_local: structures of this rank that count (0 for a stand-in).
    """

    graph: AtomicGraph
    num_global: int
    num_local: int


def _weightless(graph: AtomicGraph) -> AtomicGraph:
    """``graph`` with loss weight 0: it contributes exactly zero to loss and gradients."""
    labels = dict(graph.labels)
    labels[keys.WEIGHT] = torch.zeros(graph.num_graphs, dtype=graph.dtype)
    return replace(graph, labels=labels, _cache={})


class _Collate:
    """Picklable ``collate_fn`` for worker processes: batch, or a weightless stand-in."""

    def __init__(self, weightless: bool):
        self.weightless = weightless

    def __call__(self, graphs: list[AtomicGraph]) -> AtomicGraph:
        graph = batch_graphs(graphs)
        return _weightless(graph) if self.weightless else graph


class ShardedLoader:
    """This rank's batches of ``dataset``; iterating yields :class:`Batch`.

    Args:
        dataset: one-structure graphs (``len`` and integer indexing).
        batch_size: structures per rank and step.
        shuffle: a new order every epoch (seed ``seed + epoch``; call :meth:`set_epoch`).
        seed: shuffling seed.
        rank, world_size: this process's place among the ranks.
        num_workers: worker processes that read and batch (0: in this process).
        device: where the batches go.

    Raises:
        ValueError: an empty data set, ``batch_size`` < 1, a bad rank or ``num_workers``.
    """

    def __init__(
        self,
        dataset: Sequence[AtomicGraph],
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        device: torch.device | str | None = None,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if len(dataset) == 0:
            raise ValueError("ShardedLoader needs at least one structure, got an empty data set")
        if not (isinstance(world_size, int) and world_size >= 1 and 0 <= rank < world_size):
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, {world_size=}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.device = device
        self.epoch = 0
        self._fixed: list[Batch] | None = None

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffled order of ``epoch`` on the next iteration."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.global_batch_size)

    def order(self) -> list[int]:
        """Indices of the data set in this epoch's order (the same on every rank)."""
        n = len(self.dataset)
        if not self.shuffle:
            return list(range(n))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(n, generator=generator).tolist()

    def plan(self) -> list[tuple[list[int], int, bool]]:
        """Per step: (indices this rank reads, global batch size, weightless stand-in?)."""
        order = self.order()
        steps = []
        for start in range(0, len(order), self.global_batch_size):
            chunk = order[start : start + self.global_batch_size]
            mine = chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            steps.append((mine or chunk[:1], len(chunk), not mine))
        return steps

    def _wrap(self, graph: AtomicGraph, indices: list[int], size: int, weightless: bool):
        if self.device is not None:
            graph = graph.to(self.device)
        return Batch(graph, size, 0 if weightless else len(indices))

    def __iter__(self) -> Iterator[Batch]:
        plan = self.plan()
        cacheable = isinstance(self.dataset, list) and not self.shuffle
        if cacheable and self._fixed is not None:
            yield from self._fixed  # batched once (keeps their Coulomb plans)
            return
        if self.num_workers == 0:
            out = []
            for indices, size, weightless in plan:
                graph = _Collate(weightless)([self.dataset[i] for i in indices])
                batch = self._wrap(graph, indices, size, weightless)
                if cacheable:
                    out.append(batch)
                yield batch
            if cacheable:
                self._fixed = out
            return
        # Worker processes: one DataLoader per weightless-ness (a stand-in is at most the
        # last step), reading on demand in the planned order.
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=[indices for indices, _, w in plan if not w],
            collate_fn=_Collate(False),
            num_workers=self.num_workers,
            persistent_workers=False,
        )
        regular = iter(loader)
        for indices, size, weightless in plan:
            if weightless:
                graph = _Collate(True)([self.dataset[i] for i in indices])
            else:
                graph = next(regular)
            yield self._wrap(graph, indices, size, weightless)
