"""Data-parallel training on torch.distributed: ``torchrun --nproc-per-node N -m unrolled train ...``.

Each of the N processes (ranks) holds the whole model (wrapped in DistributedDataParallel, which
averages the gradients in the backward pass: gloo on CPU, nccl on CUDA, one GPU per rank) and
takes its share of every batch: the rows ``[r * B / N, (r + 1) * B / N)`` of a batch of B rows
(streams of the char-LM, texts of the classifier). A task's loss is a mean over the rows of its
batch, so the averaged gradient is the gradient of the global batch's mean loss, as in one
process; B (every batch) must be a multiple of N. The weights start equal (the same seed, and
DistributedDataParallel broadcasts rank 0's); then each rank draws its own random numbers (seed +
rank: its own dropout masks), and a checkpoint keeps every rank's random state. Rank 0 alone
writes the run directory, logs and shows the progress bar; the decision to stop (steps, time
budget, patience) is rank 0's, shared with the others every step. Ctrl-C under torchrun stops
the processes without a save (torchrun escalates the signal): the last checkpoint is kept. A run
resumes with the world size it was trained with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> World | None:
    """The world torchrun describes in the environment (None outside torchrun or with one process)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def init(world: World, device: torch.device) -> torch.device:
    """Join the process group (once); the device of this rank (``cuda:LOCAL_RANK`` on GPUs)."""
    if device.type == "cuda":  # under torchrun, rank r uses GPU LOCAL_RANK of its machine
        if world.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"local rank {world.local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                "give torchrun at most that many --nproc-per-node"
            )
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def leave(wait: bool = False) -> None:
    """Leave the process group, if this process joined one; ``wait``: once every rank is done
    (after a success: a rank that left early would be taken for a failed one)."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (on nccl, on this rank's GPU: no guessing, no warning)."""
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def current() -> World | None:
    """The world of an initialised process group (None when training in one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shard(batch: Any, world: World) -> Any:
    """This rank's rows of a batch (a tensor, or a tuple/list of tensors with the rows first)."""
    if isinstance(batch, Tensor):
        rows = batch.size(0)
        if rows % world.size:
            raise ValueError(
                f"a batch of {rows} rows does not split over {world.size} processes: use a batch size "
                f"that is a multiple of {world.size} (and, for the classifier, a training split whose "
                "last batch is too)"
            )
        step = rows // world.size
        return batch[world.rank * step : (world.rank + 1) * step]
    if isinstance(batch, tuple | list):
        return type(batch)(shard(b, world) for b in batch)
    return batch


def agree(flag: bool, seconds: float, device: torch.device) -> tuple[bool, float]:
    """Rank 0's ``flag`` and clock, on every rank: a decision to stop that all must take at the same
    step, and the elapsed time that a time-planned learning-rate schedule reads."""
    t = torch.tensor([1.0 if flag else 0.0, seconds], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    stop, clock = t.tolist()
    return bool(stop), clock


def mean(values: Tensor) -> Tensor:
    """The mean over the ranks of a small tensor (e.g. each rank's loss)."""
    values = values.clone()
    dist.all_reduce(values)
    return values / dist.get_world_size()


def gather_rows(t: Tensor, dim: int) -> Tensor:
    """Every rank's slice of a tensor, concatenated along ``dim`` in rank order."""
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=dim)


def gather_bytes(t: Tensor, device: torch.device) -> list[Tensor]:
    """Every rank's copy of a small byte tensor (a random-number generator's state), on the CPU."""
    parts = [torch.empty_like(t, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.to(device))
    return [part.cpu() for part in parts]
