"""Process entry points for ``torch.multiprocessing.spawn`` in tests.

Spawned children import the target function by module name; a test module is not importable
by name under ``--import-mode=importlib``, while ``tests/support`` is on the path.
"""

from __future__ import annotations

import numpy as np
import torch.distributed as dist

from fairvlm.mining import LossMemory


def all_reduce_memory(rank: int, folder: str) -> None:
    """Rank 0 records a, b and rank 1 b, c in epoch 0; save the all-reduced history."""
    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank, world_size=2)
    memory = LossMemory(["a", "b", "c"], epochs=2)
    if rank == 0:
        memory.record(["a", "b"], np.array([1.0, 2.0]), 0)
    else:
        memory.record(["b", "c"], np.array([4.0, 6.0]), 0)
    memory.all_reduce_epoch(0)
    np.save(f"{folder}/rank{rank}.npy", memory.history)
    dist.destroy_process_group()
