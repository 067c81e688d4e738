"""Multi-process training on ``torch.distributed``: the process group and its collectives.

One process per device ("rank"), started by ``torchrun`` (which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) or by
``hybridpot train --devices K`` (which starts ``torchrun`` for you). Every rank holds the
same model and optimiser; per step each rank computes the loss of its part of the global
batch and the gradients are summed across ranks, so K ranks with ``batch_size`` b take
the same steps as one process with batch K·b (see :class:`hybridpot.train.loss.Loss`
and :class:`hybridpot.data.loader.ShardedLoader` for why this is exact, not approximate).

Backends: ``gloo`` for CPU ranks, ``nccl`` for CUDA ranks (one GPU per rank, chosen by
``LOCAL_RANK``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

#: Environment variables that ``torchrun`` sets in every rank.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a multi-process run (rank 0 of 1 when alone).

    Attributes:
        rank: this process's index, 0 <= rank < world_size.
        world_size: number of processes (ranks).
        local_rank: index among the ranks on this machine (selects the GPU).
        device: where collectives run (``cpu`` for gloo, ``cuda:LOCAL_RANK`` for nccl).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def active(self) -> bool:
        """True when there is more than one rank (collectives are needed)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that writes files and prints."""
        return self.rank == 0

    # ------------------------------------------------------------------ collectives
    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``tensor`` over all ranks (a new tensor; the input is kept).

        Same shape, dtype and device as ``tensor``; identity with one rank.
        """
        if not self.active:
            return tensor
        out = tensor.detach().to(self.device, copy=True)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(tensor.device)

    def broadcast_object(self, value):
        """``value`` as rank 0 has it (a picklable object of plain data), on every rank."""
        if not self.active:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank has arrived here (no-op with one rank)."""
        if self.active:
            dist.barrier()


def from_environment(device: str = "cpu") -> Distributed:
    """The process group described by ``torchrun``'s environment, initialised once.

    Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) this is a single process and nothing
    is initialised.

    Args:
        device: the configured torch device; ``cuda`` selects the ``nccl`` backend and
            the GPU ``cuda:LOCAL_RANK``, anything else ``gloo``.

    Raises:
        ValueError: a ``torchrun`` variable is missing or not an integer.
    """
    world = os.environ.get("WORLD_SIZE")
    if world is None:
        return Distributed()
    try:
        world_size = int(world)
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"WORLD_SIZE={world!r} is set but RANK/LOCAL_RANK are missing or not integers "
            f"({error}); start multi-process training with torchrun or hybridpot train "
            f"--devices K"
        ) from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} must be in [0, WORLD_SIZE={world_size})")
    if world_size == 1:
        return Distributed()
    cuda = str(device).startswith("cuda")
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Distributed(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        device=f"cuda:{local_rank}" if cuda else "cpu",
    )


def shutdown() -> None:
    """Destroy the process group if one was initialised (end of a multi-process run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
