"""One process or many through PyTorch's own engine: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK and
the same script runs under DDP or FSDP2 (``fully_shard`` per block, then the root), NCCL on CUDA,
gloo on the CPU.

    torchrun --nproc_per_node 8 -m directanimator_core train config.json
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn

from ..offload import policy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Processes:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(preferred_device: Optional[str] = None) -> Processes:
    """Join the process group torchrun describes in the environment (nothing to join for one process).

    Args:
        preferred_device: "cpu", "cuda"...; None lets offload's policy choose.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = policy.compute_device(preferred_device)
    if device.type == "cuda":
        device = policy.compute_device(f"cuda:{local_rank}")
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        cuda = device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
        log.info("process %d of %d on %s", rank, world_size, device)
    return Processes(rank, world_size, local_rank, device)


def teardown(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(processes: Processes) -> None:
    if processes.distributed:
        dist.barrier()


def mean_over_processes(values: torch.Tensor, processes: Processes) -> torch.Tensor:
    """The mean of ``values`` over all processes (for the loss log)."""
    if not processes.distributed:
        return values
    values = values.detach().clone()
    dist.all_reduce(values)
    return values / processes.world_size


def gather_objects(value: Any, processes: Processes) -> list[Any]:
    """Every process's ``value`` on every process (small JSON-able things: RNG states)."""
    if not processes.distributed:
        return [value]
    out: list[Any] = [None] * processes.world_size
    dist.all_gather_object(out, value)
    return out


def wrap(model: nn.Module, blocks: nn.ModuleList, strategy: str, processes: Processes) -> nn.Module:
    """``model`` ready for data-parallel training, or unchanged for one process.

    Args:
        model: the trained module (parameters already on processes.device).
        blocks: its repeated blocks: FSDP2 shards each on its own, so only one block's weights are
            gathered at a time.
        strategy: "ddp" or "fsdp".
        processes: from setup().
    """
    if not processes.distributed:
        return model
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(processes.device.type, (processes.world_size,))
        for block in blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [processes.device.index] if processes.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
