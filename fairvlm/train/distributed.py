"""Data-parallel training across processes started by ``torchrun`` (NCCL on GPUs, gloo on CPUs).

How a step stays equal to the single-process step on the same global batch of B pairs:

1. Every rank embeds its own slice of the batch (``B / world_size`` pairs).
2. :func:`gather_with_grad` concatenates the slices of all ranks, in rank order, so every
   rank holds the global ``[B, D]`` embeddings and computes the same per-pair losses, DBPM
   record and fairness term (which thus sees the whole global batch) as one process would.
   Gradients flow back to the local slice: the backward pass sums, over ranks, the gradient
   of each rank's (identical) objective with respect to this slice, i.e. ``world_size``
   times the single-process gradient of the slice.
3. :func:`average_gradients` averages the parameter gradients over ranks, which removes that
   factor for the towers and leaves the gradient of the shared logit scale (computed whole on
   every rank) as it is: the result is the single-process gradient.

Only rank 0 writes the run folder; every rank records the global batch in its own copy of
the DBPM memory, so the memories agree by sample id without extra communication.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: ``rank`` of ``world_size`` (1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run folder (rank 0)."""
        return self.rank == 0


def init_from_env(device: str) -> tuple[Distributed, str]:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Reads ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with more than one process it starts
    the group (NCCL when ``device`` is CUDA, else gloo) and, on CUDA, gives each process the
    GPU of its local rank. Returns the job description and the device this process uses.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.device(device).type == "cuda":
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank), device


def shutdown(job: Distributed) -> None:
    """Leave the process group (no-op for a single process)."""
    if job.enabled and dist.is_initialized():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns this rank's slice of the summed gradient."""

    @staticmethod
    def forward(ctx, tensor: Tensor, rank: int, world_size: int) -> Tensor:
        ctx.rank, ctx.rows = rank, tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        summed = grad.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return summed[start:start + ctx.rows], None, None


def gather_with_grad(tensor: Tensor, job: Distributed) -> Tensor:
    """The rows of all ranks, in rank order, differentiable with respect to this rank's rows.

    Every rank must pass a tensor of the same shape. Identity for a single process.
    """
    if not job.enabled:
        return tensor
    return _GatherWithGrad.apply(tensor, job.rank, job.world_size)


@torch.no_grad()
def gather(tensor: Tensor, job: Distributed) -> Tensor:
    """The rows of all ranks, in rank order, without gradients."""
    if not job.enabled:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(job.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def average_gradients(parameters: list[torch.nn.Parameter], job: Distributed) -> None:
    """Replace each gradient by its mean over ranks (one all-reduce of a flat buffer)."""
    if not job.enabled:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= job.world_size
    offset = 0
    for parameter, grad in zip(parameters, grads, strict=True):
        parameter.grad = flat[offset:offset + grad.numel()].view_as(grad).clone()
        offset += grad.numel()


def any_rank(flag: bool, job: Distributed, device: str) -> bool:
    """Whether ``flag`` is true on any rank (every rank must call it, in step)."""
    if not job.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier(job: Distributed) -> None:
    """Wait until every rank gets here (no-op for a single process)."""
    if job.enabled:
        dist.barrier()
