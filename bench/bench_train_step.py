"""Step time of the fair training step against a plain CLIP step, side by side in one process.

Three step designs on the same model, batch and device, interleaved round by round so machine
noise hits all three alike; medians reported, with ratios against the plain step:

- ``plain``: one forward pass, mean per-pair CLIP loss (open_clip's ClipLoss), backward, AdamW.
- ``fair``: fairvlm's step. The same forward pass gives the per-pair losses, DBPM records them
  and reweights its flagged pairs, and the debiased Sinkhorn term of every group of the
  attribute is solved in one batched call (METHOD.md sections 2-4).
- ``reference``: the public code's design: the fair term from ``diag(L @ L)`` plus one extra
  forward pass per group on a separately drawn group batch (``1 + |G|`` forward passes).

Models are randomly initialised (timing needs no pretrained weights; nothing is downloaded).
On CUDA the forward pass runs under ``torch.autocast(bfloat16)`` and the peak GPU memory of
each design is reported.

Usage::

    python bench/bench_train_step.py                       # demo model, CPU
    python bench/bench_train_step.py --arch ViT-B-16 --device cuda --steps 30
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import open_clip
import torch

from fairvlm.mining import DBPMConfig, LossMemory
from fairvlm.models.architectures import DEMO_ARCH, build_model
from fairvlm.train.losses import (
    FairnessConfig,
    LossTerms,
    fair_clip_objective,
    objective,
    per_pair_clip_loss,
    reference_fairness_term,
)

GROUP_SHARES = (0.08, 0.15, 0.77)  # race in FairVLMed: Asian, Black, White


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default=DEMO_ARCH)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=15, help="timed rounds per design")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build_model(args.arch).to(device).train()
    image_size = model.visual.image_size
    image_size = image_size[0] if isinstance(image_size, tuple | list) else image_size
    context = model.context_length
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = _random_batch(args.batch, image_size, context, device)
    group_batches = {g: _random_batch(max(4, args.batch // 4), image_size, context, device)
                     for g in range(len(GROUP_SHARES))}
    groups = _group_index(args.batch)
    memory = _memory_with_history(args.batch)
    fair_config = FairnessConfig(lam=0.5, min_per_group=2)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())

    def forward(images: torch.Tensor, tokens: torch.Tensor):
        with autocast:
            image_features, text_features, scale = model(images, tokens)
        return image_features.float(), text_features.float(), scale.float()

    def plain() -> None:
        u, v, s = forward(*batch)
        per_pair_clip_loss(u, v, s).mean().backward()

    def fair() -> None:
        u, v, s = forward(*batch)
        _fair_objective(per_pair_clip_loss(u, v, s), memory, groups, fair_config,
                        u, v).total.backward()

    def reference() -> None:
        u, v, s = forward(*batch)
        losses = per_pair_clip_loss(u, v, s)
        with torch.no_grad():
            group_logits = {}
            for g, (images, tokens) in group_batches.items():
                gu, gv, gs = forward(images, tokens)
                group_logits[g] = gs * gu @ gv.T
        fairness = reference_fairness_term(s * u @ v.T, group_logits, len(GROUP_SHARES),
                                           FairnessConfig(lam=1e-7, statistic="reference",
                                                          min_per_group=2))
        objective(losses, fairness, fair_config).total.backward()

    designs: dict[str, Callable[[], None]] = {"plain": plain, "fair": fair,
                                              "reference": reference}
    times = {name: [] for name in designs}
    peak_mb = {}
    for round_index in range(args.warmup + args.steps):
        for name, step in designs.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = _timed(step, optimizer, device)
            if device.type == "cuda":
                peak_mb[name] = torch.cuda.max_memory_allocated(device) / 2**20
            if round_index >= args.warmup:
                times[name].append(seconds)
    with torch.no_grad():
        sample_losses = per_pair_clip_loss(*forward(*batch)).double().cpu()
    host_ms = _host_fair_ms(sample_losses, memory, groups, fair_config)
    _report(args, device, times, peak_mb, host_ms)


def _timed(step: Callable[[], None], optimizer: torch.optim.Optimizer,
           device: torch.device) -> float:
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _fair_objective(losses: torch.Tensor, memory: LossMemory, groups: np.ndarray,
                    config: FairnessConfig, image: torch.Tensor | None = None,
                    text: torch.Tensor | None = None) -> LossTerms:
    """The fair step after its forward pass, as the training loop runs it: DBPM records the
    per-pair losses and weights its flagged pairs, then the objective with the fairness term
    (``image``/``text`` are needed only for the similarity statistic)."""
    memory.record(memory.ids, losses.detach(), epoch=2)
    return fair_clip_objective(losses, image, text, groups, len(GROUP_SHARES), config,
                               weights=memory.weights(memory.ids, losses),
                               flagged=memory.flagged(memory.ids))


def _host_fair_ms(losses: torch.Tensor, memory: LossMemory, groups: np.ndarray,
                  config: FairnessConfig, repeats: int = 200) -> float:
    """Median host time of the fair step's own work (DBPM record and weights, the fairness
    term and its backward) on one batch's losses held on the CPU: the part of a GPU step
    during which the device waits for the host."""
    times = []
    for _ in range(repeats):
        leaf = losses.clone().requires_grad_()
        start = time.perf_counter()
        _fair_objective(leaf, memory, groups, config).total.backward()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _random_batch(n: int, image_size: int, context: int, device: torch.device):
    images = torch.randn(n, 3, image_size, image_size, device=device)
    tokens = torch.randint(1, 49407, (n, context), device=device)
    return images, tokens


def _group_index(n: int) -> np.ndarray:
    """Host group codes, as the training loop passes them (the sampler's numpy codes)."""
    counts = np.maximum(4, np.round(np.array(GROUP_SHARES) * n)).astype(int)
    counts[-1] = n - counts[:-1].sum()
    return np.repeat(np.arange(len(counts)), counts)


def _memory_with_history(n: int) -> LossMemory:
    """A DBPM memory past warm-up with two epochs of history and a few flagged pairs."""
    rng = np.random.default_rng(0)
    memory = LossMemory([f"pair{i}" for i in range(n)], epochs=4, config=DBPMConfig())
    for epoch in range(2):
        losses = rng.normal(3.0, 0.3, n)
        losses[:2] += 3.0
        memory.record(memory.ids, losses, epoch)
    memory.begin_epoch(2)
    return memory


def _report(args: argparse.Namespace, device: torch.device, times: dict[str, list[float]],
            peak_mb: dict[str, float], host_ms: float) -> None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads")
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"arch {args.arch}, batch {args.batch}, {args.steps} timed rounds, device: {name}")
    print(f"{'design':<10} {'median ms':>10} {'ratio':>7} {'peak MiB':>9}")
    for design, median in medians.items():
        peak = f"{peak_mb[design]:9.0f}" if design in peak_mb else f"{'-':>9}"
        print(f"{design:<10} {median * 1e3:10.1f} {median / medians['plain']:7.3f} {peak}")
    print(f"fair step's host work (DBPM + fairness term + its backward): {host_ms:.2f} ms")
    if device.type != "cuda":
        print("GPU figures: run this script on a CUDA machine (see README, Benchmarks).")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"arch": args.arch, "batch": args.batch, "device": name,
                       "open_clip": open_clip.__version__, "torch": torch.__version__,
                       "median_ms": {k: v * 1e3 for k, v in medians.items()},
                       "fair_host_ms": host_ms,
                       "peak_mib": peak_mb}, handle, indent=2)


if __name__ == "__main__":
    main()
