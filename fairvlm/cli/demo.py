"""``fairvlm demo``: write the synthetic demo data set (Harvard-FairVLMed layout)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    from fairvlm.data.demo import DemoConfig

    defaults = DemoConfig()
    parser = subparsers.add_parser(
        "demo",
        help="write the SYNTHETIC demo data set in the Harvard-FairVLMed layout",
        description="Write a seeded, deterministic SYNTHETIC data set of fundus-like images, "
        "clinical-style notes and FairVLMed attribute codes, with designed group gaps and "
        "known corrupted training pairs (truth in demo_truth.csv).",
    )
    parser.add_argument("--out", type=Path, default=None,
                        help="folder to write (default: the demo folder of the fairvlm home)")
    parser.add_argument("--subjects", type=int, default=defaults.n_subjects,
                        help="subjects in the main set, split 70/10/20 (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=defaults.image_size,
                        help="image width and height in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="random seed (default: %(default)s)")
    parser.add_argument("--eval-size", type=int, default=0,
                        help="also write an uncorrupted evaluation set of N subjects to "
                        "OUT/eval (default: none)")
    parser.add_argument("--oversample-minorities", action="store_true",
                        help="make every race and language group equally likely in the "
                        "evaluation set")
    parser.add_argument("--no-difficulty", action="store_true",
                        help="switch off the designed group differences (ablation)")
    parser.add_argument("--no-corruption", action="store_true",
                        help="no swapped notes and no duplicate pairs (ablation)")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing if OUT already holds a complete demo with this config")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (the one-line summary is still printed)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the demo (or confirm it is up to date) and print a one-line summary."""
    from fairvlm.data.demo import DemoConfig, generate_demo, is_complete_demo, read_demo_manifest
    from fairvlm.paths import demo_data_dir

    config = DemoConfig(
        n_subjects=args.subjects,
        image_size=args.image_size,
        seed=args.seed,
        eval_size=args.eval_size,
        eval_oversample_minorities=args.oversample_minorities,
    )
    if args.no_difficulty:
        config = config.without_difficulty()
    if args.no_corruption:
        config = config.without_corruption()
    out = (args.out or demo_data_dir()).expanduser().resolve()
    if args.if_missing and is_complete_demo(out, config):
        print(f"demo: up to date at {out} ({config.n_subjects} SYNTHETIC subjects, "
              f"seed {config.seed}); nothing to do")
        return 0
    started = time.perf_counter()
    path = generate_demo(out, config, progress=not args.quiet)
    counts = read_demo_manifest(path)["counts"]
    extra = f", evaluation set {counts['eval']} in eval/" if counts["eval"] else ""
    print(
        f"demo: wrote {config.n_subjects} SYNTHETIC subjects (Training {counts['Training']}, "
        f"Validation {counts['Validation']}, Test {counts['Test']}; {config.image_size} px; "
        f"seed {config.seed}; {counts['faulty_swap']} swapped notes and "
        f"{counts['noisy_duplicate']} duplicate copies in Training{extra}) to {path} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0
