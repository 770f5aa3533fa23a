"""``fairvlm prepare-demo-model``: train the built-in demo model unless it is already there."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prepare-demo-model`` sub-command."""
    parser = subparsers.add_parser(
        "prepare-demo-model",
        help="train the demo model on the demo data (about two minutes on 2 CPU cores) "
        "unless an up-to-date one exists",
        description="Train the built-in demo model (a small open_clip ResNet CLIP) from scratch "
        "on the demo data's training split, unless one trained on the same data already exists.",
    )
    parser.add_argument("--data", type=Path, default=None,
                        help="demo data folder (default: the home folder's demo data, "
                        "generated if missing)")
    parser.add_argument("--retrain", action="store_true",
                        help="train again even if an up-to-date demo model exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Prepare the demo model and say where it is and how it was trained."""
    from fairvlm.models.demo_model import demo_model_info, ensure_demo_model

    weights = ensure_demo_model(args.data, progress=not args.quiet, retrain=args.retrain)
    info = demo_model_info() or {}
    seconds = info.get("seconds", {}).get("total")
    losses = info.get("epoch_losses") or [float("nan")]
    trained = f"trained in {seconds:.0f} s, " if seconds is not None else ""
    print(f"demo model ready: {weights} ({trained}{info.get('steps', '?')} steps, "
          f"final epoch loss {losses[-1]:.3f})")
    return 0
