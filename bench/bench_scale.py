"""Benchmark: how the time and peak memory of each step grow from 10,000 to 100,000 pairs.

For every size in ``--sizes`` (pairs in the audited test split), the demo data set is generated
once into ``--cache`` (default ``/tmp/fairvlm-bench-scale``), with small images and splits of
10/10/80 %, next to a demo-architecture model with seeded random weights (the timings do not
depend on the weights): ``prepare`` of ``bench_reaudit.py``. Then each step runs in its own
process, which loads its inputs, resets the kernel's peak-RSS counter (``/proc/self/clear_refs``)
and times the step alone:

- ``generate``: the demo generator (measured once, when the data are generated; later runs
  report that measurement; its memory includes importing torch for the model checkpoint);
- ``load``: ``load_dataset`` and the table's content fingerprint (the cache key);
- ``embed``: ``compute_embeddings`` of every pair (the on-disk cache removed first, then
  written for the next steps);
- ``audit``: ``run_audit`` with the cached embeddings: 4 attributes, ``--bootstrap``
  resamples, ``--permutations`` label shuffles (its stages are listed below the table);
- ``pair_scores``: ``score_pairs`` of every split (the Bad pairs page's first listing; a split
  of more than ``MAX_NEGATIVES + 1`` pairs is scored against a sample of negatives, see
  ``fairvlm.scoring.pairs``);
- ``detectors``: ``browser_frame``: every detector and the combined score, with the DBPM
  columns of a synthetic 10-epoch loss memory of the training split;
- ``browser``: one rerun's data work on that frame, without Streamlit: the flag counts, a filter
  + sort + page, the score range and the group make-up (median of ``--repeats``).

A table gives each step's time and peak RSS at every size and the time ratio between the
smallest and the largest size (linear growth = the ratio of the sizes). Results go to
``bench/results/scale.json`` and ``scale.txt`` (``--out``).

Usage: ``python bench/bench_scale.py [--sizes 10000 100000] [--bootstrap 1000]``
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = ("generate", "load", "embed", "audit", "pair_scores", "detectors", "browser")
AUDIT_STAGES = ("compute_embeddings", "zero_shot_probabilities", "pair_scores",
                "audit_attribute", "_group_distances", "_distribution_view")
SCORE_STAGES = ("compute_embeddings", "pair_scores", "zero_shot_probabilities")
EPOCHS = 10

sys.path.insert(0, str(HERE))
from bench_reaudit import ATTRIBUTES, SPLIT_FRACTIONS, instrument, prepare  # noqa: E402


def rss_mb(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak since the last reset) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(step: Callable[[], dict | None]) -> dict:
    """Wall and CPU seconds of ``step()``, the RSS before it and the peak RSS during it."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = rss_mb("VmRSS")
    start, start_cpu = time.perf_counter(), time.process_time()
    extra = step() or {}
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "rss_before_mb": before,
            "peak_rss_mb": rss_mb("VmHWM"), **extra}


class Workspace:
    """The data set, model and intermediate results of one size (made by ``prepare``)."""

    def __init__(self, cache: Path, pairs: int, image_size: int) -> None:
        self.cache, self.pairs, self.image_size = cache, pairs, image_size
        self.folder = cache / f"work-{pairs}-{image_size}px"
        self.folder.mkdir(parents=True, exist_ok=True)

    def prepare(self) -> tuple[Path, Path]:
        """The demo folder and the model checkpoint, generated when missing."""
        return prepare(self.cache, self.pairs, self.image_size)

    def path(self, name: str) -> Path:
        return self.folder / name

    def save(self, name: str, value: object) -> None:
        with self.path(name).open("wb") as handle:
            pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)

    def read(self, name: str):
        with self.path(name).open("rb") as handle:
            return pickle.load(handle)

    def table(self):
        return self.read("table.pkl")

    def loaded(self):
        from fairvlm.models import load_model

        return load_model(str(self.prepare()[1]), device="cpu")


def step_generate(work: Workspace, args: argparse.Namespace) -> dict:
    """Generate the data (when missing); the measurement is kept in ``generate.json`` when it
    did generate them, so that a run that finds the data there reports it."""
    found = {}

    def run() -> None:
        found["data"] = work.prepare()[0]

    started = time.time()
    result = measure(run)
    if (found["data"] / "demo_config.json").stat().st_mtime >= started:
        work.path("generate.json").write_text(json.dumps(result))
        return result
    return {**result, "seconds": None, "peak_rss_mb": None}


def step_load(work: Workspace, args: argparse.Namespace) -> dict:
    from fairvlm.data import load_dataset

    found = {}

    data = work.prepare()[0]

    def run() -> dict:
        found["table"] = load_dataset(data)
        found["table"].fingerprint()
        return {"split_sizes": found["table"].frame["split"].value_counts().to_dict()}

    result = measure(run)
    work.save("table.pkl", found["table"])
    return result


def step_embed(work: Workspace, args: argparse.Namespace) -> dict:
    from fairvlm.scoring import compute_embeddings
    from fairvlm.scoring.embeddings import embedding_cache_path

    table, loaded = work.table(), work.loaded()
    embedding_cache_path(loaded, table).unlink(missing_ok=True)

    def run() -> None:
        compute_embeddings(loaded, table)

    return measure(run)


def step_audit(work: Workspace, args: argparse.Namespace) -> dict:
    from fairvlm import audit
    from fairvlm.config import AuditConfig

    table, loaded = work.table(), work.loaded()
    config = AuditConfig(attributes=ATTRIBUTES, n_bootstrap=args.bootstrap,
                         n_permutations=args.permutations)
    stages = instrument(audit, tuple(name for name in AUDIT_STAGES if hasattr(audit, name)))

    def run() -> dict:
        result = audit.run_audit(table, loaded, config)
        return {"audited_pairs": result.overall["n"], "warnings": list(result.warnings)}

    return {**measure(run), "stages": dict(stages)}


def step_pair_scores(work: Workspace, args: argparse.Namespace) -> dict:
    from fairvlm import pair_issues

    table, loaded = work.table(), work.loaded()
    stages = instrument(pair_issues, SCORE_STAGES)
    found = {}

    def run() -> None:
        found["scores"] = pair_issues.score_pairs(loaded, table)

    result = {**measure(run), "stages": dict(stages)}
    if "negatives" in found["scores"]:
        result["most_negatives_by_split"] = (
            found["scores"].groupby("split")["negatives"].max().to_dict())
    work.save("scores.pkl", found["scores"])
    return result


def synthetic_memory(table, seed: int = 0):
    """A DBPM loss memory of the training split: ``EPOCHS`` epochs of random losses."""
    import numpy as np

    from fairvlm.mining import LossMemory

    ids = table.ids[table.split_indices("train")].astype(str)
    memory = LossMemory(ids, EPOCHS)
    rng = np.random.default_rng(seed)
    for epoch in range(EPOCHS):
        memory.record(ids, rng.gamma(4.0, 0.5, len(ids)), epoch)
    return memory


def step_detectors(work: Workspace, args: argparse.Namespace) -> dict:
    from fairvlm.pair_issues import IssueSettings, find_pair_issues
    from fairvlm.ui.pair_browser import browser_frame

    table, scores = work.table(), work.read("scores.pkl")
    memory = synthetic_memory(table)
    found = {}

    def run() -> dict:
        start = time.perf_counter()
        find_pair_issues(scores)
        without_run = time.perf_counter() - start
        found["frame"] = browser_frame(table, scores, memory=memory, settings=IssueSettings())
        return {"stages": {"find_pair_issues (no run)": without_run,
                           "browser_frame (with a run)": time.perf_counter() - start
                           - without_run}}

    result = measure(run)
    work.save("frame.pkl", found["frame"])
    return result


def step_browser(work: Workspace, args: argparse.Namespace) -> dict:
    import numpy as np

    from fairvlm.ui import pair_browser as browser

    table, frame = work.table(), work.read("frame.pkl")
    chosen = browser.PairFilter(kind=browser.ANY_FLAG, split="test", attribute="race", group=1,
                                score_column="bad_pair_score", score_range=(0.2, 1.0))

    def rerun() -> None:
        for kind in browser.flag_kinds(frame):
            int(browser.flag_mask(frame, kind).sum())
        positions = browser.order(frame, browser.select(frame, chosen), "bad_pair_score")
        frame.iloc[browser.page(positions, 3, 25)]
        values = frame["bad_pair_score"].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        float(values.min()), float(values.max())
        browser.group_makeup(frame, browser.scope_mask(frame, chosen),
                             browser.flag_mask(frame, chosen.kind), table.attribute("race"))

    times = []

    def run() -> dict:
        for _ in range(args.repeats):
            start = time.perf_counter()
            rerun()
            times.append(time.perf_counter() - start)
        return {}

    result = measure(run)
    return {**result, "seconds": statistics.median(times), "repeats": args.repeats}


CHILD_STEPS: dict[str, Callable[[Workspace, argparse.Namespace], dict]] = {
    "generate": step_generate, "load": step_load, "embed": step_embed, "audit": step_audit,
    "pair_scores": step_pair_scores, "detectors": step_detectors, "browser": step_browser}


def run_child(args: argparse.Namespace) -> None:
    os.environ["FAIRVLM_HOME"] = str(args.cache / "home")
    work = Workspace(args.cache, args.child_pairs, args.image_size)
    result = CHILD_STEPS[args.child](work, args)
    print("RESULT " + json.dumps(result, default=str), flush=True)


def run_step(step: str, pairs: int, args: argparse.Namespace) -> dict:
    """Run ``step`` for ``pairs`` in a fresh process; its measurement."""
    command = [sys.executable, __file__, "--child", step, "--child-pairs", str(pairs),
               "--cache", str(args.cache), "--image-size", str(args.image_size),
               "--bootstrap", str(args.bootstrap), "--permutations", str(args.permutations),
               "--repeats", str(args.repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"step {step} at {pairs} pairs failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def measure_size(pairs: int, args: argparse.Namespace) -> dict[str, dict]:
    """Every step at ``pairs``; the generator's measurement is the one of the run that
    generated the data (``None`` if unknown)."""
    generated = Workspace(args.cache, pairs, args.image_size).path("generate.json")
    results = {}
    for step in STEPS:
        if step == "generate" and generated.is_file():
            results[step] = json.loads(generated.read_text())
        else:
            results[step] = run_step(step, pairs, args)
        print(f"  {pairs:>9,} pairs  {step:<12} {_number(results[step]['seconds'], 's')}  "
              f"peak RSS {_number(results[step]['peak_rss_mb'], 'MB', '8.0f')}", flush=True)
    return results


def _number(value: float | None, unit: str, spec: str = "9.2f") -> str:
    width = len(format(0.0, spec)) + 1 + len(unit)
    return "n/a".rjust(width) if value is None else f"{format(value, spec)} {unit}"


def table_text(results: dict[int, dict[str, dict]], args: argparse.Namespace) -> str:
    sizes = sorted(results)
    header = (f"{'step':<12}" + "".join(f"{f'time @{n:,}':>14}" for n in sizes)
              + f"{'ratio':>8}" + "".join(f"{f'peak RSS (step) @{n:,}':>26}" for n in sizes))
    lines = [header, "-" * len(header)]
    for step in STEPS:
        times = [results[n][step]["seconds"] for n in sizes]
        ratio = (f"{times[-1] / times[0]:7.1f}x" if None not in (times[0], times[-1])
                 else "n/a".rjust(8))
        memory = "".join(
            f"{_number(row['peak_rss_mb'], 'MB', '12.0f')} "
            + ("" if row["peak_rss_mb"] is None
               else f"({row['peak_rss_mb'] - row['rss_before_mb']:+6.0f} MB)")
            for row in (results[n][step] for n in sizes))
        lines.append(f"{step:<12}" + "".join(_number(t, "s", "12.2f") for t in times)
                     + ratio + memory)
    lines.append(f"ratio: time at {sizes[-1]:,} / time at {sizes[0]:,} (linear growth = "
                 f"{sizes[-1] / sizes[0]:g}x). Peak RSS: of the step's process (imports and inputs "
                 "included), in brackets its growth during the step. Stage times are summed "
                 "over the threads of the step.")
    for step in ("audit", "pair_scores", "detectors"):
        names = [name for name in results[sizes[-1]][step]["stages"]
                 if all(name in results[n][step]["stages"] for n in sizes)]
        lines.append(f"stages of {step} (s at each size): " + "; ".join(
            f"{name} " + " / ".join(f"{results[n][step]['stages'][name]:.2f}" for n in sizes)
            for name in names))
    lines.append(f"settings: {len(ATTRIBUTES)} attributes, {args.bootstrap} bootstrap "
                 f"resamples, {args.permutations} permutations, {args.image_size} px images, "
                 f"splits {SPLIT_FRACTIONS}, OMP_NUM_THREADS="
                 f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPU cores; "
                 f"browser: median of {args.repeats} reruns")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="pairs in the audited (test) split")
    parser.add_argument("--bootstrap", type=int, default=1_000)
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10, help="browser reruns timed")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/fairvlm-bench-scale"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scale")
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--child-pairs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.child:
        run_child(args)
        return
    results = {}
    for pairs in sorted(args.sizes):
        print(f"{pairs:,} pairs in the audited split:", flush=True)
        results[pairs] = measure_size(pairs, args)
    text = table_text(results, args)
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.parent.joinpath(args.out.name + ".txt").write_text(text + "\n")
    settings = {key: value for key, value in vars(args).items()
                if key in ("bootstrap", "permutations", "image_size", "repeats")}
    args.out.parent.joinpath(args.out.name + ".json").write_text(json.dumps(
        {"settings": {**settings, "attributes": ATTRIBUTES, "split_fractions": SPLIT_FRACTIONS,
                      "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                      "cpu_count": os.cpu_count()},
         "results": {str(n): steps for n, steps in results.items()}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
