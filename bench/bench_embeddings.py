"""Benchmark: embedding throughput of ``fairvlm.scoring`` against a bare open_clip loop.

Both sides embed the same pairs of a synthetic demo data set with the same model, batch size
and device, in the same process, in alternating runs: the bare loop decodes each image
(``read_image`` -> ``to_pil`` -> the model's ``preprocess``), tokenizes the notes and calls
``encode_image`` / ``encode_text`` batch by batch; fairvlm runs ``compute_embeddings`` with the
cache off and the same number of decoding workers (0 by default). The model has random weights
of the chosen architecture (throughput does not depend on the weights; nothing is downloaded).
Prints pairs per second of each side (medians) and the ratio fairvlm / bare (goal >= 0.9).

Usage: ``python bench/bench_embeddings.py [--pairs 1000] [--batch-size 64] [--arch fairvlm-demo-rn]
[--device cpu|cuda] [--repeats 5] [--image-size 128] [--workers 0]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fairvlm.data import load_dataset, read_image, to_pil
from fairvlm.data.demo import DemoConfig, generate_demo
from fairvlm.models import LoadedModel, load_model, save_checkpoint
from fairvlm.models.architectures import DEMO_ARCH, build_model
from fairvlm.scoring import compute_embeddings


def bare_loop(loaded: LoadedModel, table, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The simplest correct open_clip loop over the same pairs."""
    refs, texts = table.frame["image"].tolist(), table.frame["text"].tolist()
    images_out, texts_out = [], []
    with torch.inference_mode():
        for start in range(0, len(refs), batch_size):
            batch = torch.stack([loaded.preprocess(to_pil(read_image(ref)))
                                 for ref in refs[start:start + batch_size]])
            tokens = loaded.tokenizer(texts[start:start + batch_size])
            images_out.append(loaded.model.encode_image(batch.to(loaded.device), normalize=True)
                              .cpu().numpy())
            texts_out.append(loaded.model.encode_text(tokens.to(loaded.device), normalize=True)
                             .cpu().numpy())
    return np.concatenate(images_out), np.concatenate(texts_out)


def timed(function) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--arch", default=DEMO_ARCH)
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0,
                        help="decoding workers for fairvlm (the bare loop has none)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        data = generate_demo(Path(folder) / "demo",
                             DemoConfig(n_subjects=args.pairs, image_size=args.image_size))
        table = load_dataset(data)
        weights = Path(folder) / "model.safetensors"
        save_checkpoint(build_model(args.arch), weights, arch=args.arch)
        loaded = load_model(str(weights), device=args.device)

        def ours():
            return compute_embeddings(loaded, table, batch_size=args.batch_size, cache=False,
                                      num_workers=args.workers)

        def bare():
            return bare_loop(loaded, table, args.batch_size)

        _, warm_ours = timed(ours)
        _, warm_bare = timed(bare)
        difference = max(np.abs(warm_ours.image - warm_bare[0]).max(),
                         np.abs(warm_ours.text - warm_bare[1]).max())
        times: dict[str, list[float]] = {"fairvlm": [], "bare": []}
        for repeat in range(args.repeats):  # alternate which side goes first
            order = [("bare", bare), ("fairvlm", ours)]
            for name, function in order if repeat % 2 else order[::-1]:
                times[name].append(timed(function)[0])

    median = {name: statistics.median(values) for name, values in times.items()}
    rate = {name: len(table) / seconds for name, seconds in median.items()}
    print(f"model {args.arch} on {loaded.device} ({torch.get_num_threads()} threads), "
          f"{len(table)} pairs, {args.image_size} px images, batch {args.batch_size}, "
          f"fairvlm workers {args.workers}, median of {args.repeats}")
    print(f"bare open_clip loop : {rate['bare']:8.1f} pairs/s ({median['bare']:.2f} s)")
    print(f"fairvlm.scoring     : {rate['fairvlm']:8.1f} pairs/s ({median['fairvlm']:.2f} s)")
    print(f"max |difference| of the embeddings: {difference:.2e}")
    print(f"ratio fairvlm / bare: {rate['fairvlm'] / rate['bare']:.3f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
