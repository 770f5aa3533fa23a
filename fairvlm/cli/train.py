"""``fairvlm train``: fair fine-tuning with DBPM into a run folder (METHOD.md sections 1-4).

Runs in the foreground with a progress bar and ends with a summary: the selected epoch, the
validation and test AUC and ES-AUC of the attribute, their change on test from the starting
model with paired bootstrap intervals, and DBPM's flagged pairs. SIGTERM or
Ctrl-C saves a checkpoint and marks the run cancelled; ``--resume`` continues it (also after
a crash or ``kill -9``) from its newest complete checkpoint, with the settings saved in its
``config.json``. Under ``torchrun --nproc_per_node=N`` the same command trains with DDP.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairvlm.errors import ConfigError
from fairvlm.metrics import Change
from fairvlm.train.evaluation import describe_selection

if TYPE_CHECKING:
    from fairvlm.train.config import TrainConfig
    from fairvlm.train.loop import TrainResult

# TrainConfig fields settable by an option of the same name (saved in config.json).
_CONFIG_FIELDS: tuple[str, ...] = (
    "data", "model", "arch", "attribute", "lam", "statistic", "distance", "blur", "fair_on", "dbpm",
    "beta_np", "beta_fp", "warmup", "epochs", "lr", "weight_decay", "batch_size", "scope",
    "last_k", "k_per_group", "seed", "device", "autocast", "grad_clip", "selection",
    "eval_min_n", "n_bootstrap", "checkpoint_every",
)
_OPTION_NAMES: dict[str, str] = {"lam": "--lambda", "n_bootstrap": "--bootstrap",
                                 "autocast": "--no-autocast"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train", help="fine-tune a model with the fairness term and DBPM",
        description="Fine-tune a CLIP-style model on a data set with the per-pair fairness term "
        "and Dynamic Bad Pair Mining, writing a run folder. Settings left out take the "
        "defaults of fairvlm.train.config.TrainConfig.")
    data = parser.add_argument_group("data and model")
    data.add_argument("--data", metavar="PATH", help="a FairVLMed folder or a manifest")
    data.add_argument("--model", metavar="SPEC", help="demo, ARCH:TAG, hf-hub:ORG/NAME or a "
                      "checkpoint file")
    data.add_argument("--arch", metavar="NAME",
                      help="open_clip architecture of a checkpoint file, when it cannot be "
                      "read or inferred from the file (e.g. ViT-B-16)")
    data.add_argument("--attribute", metavar="NAME", help="the protected attribute, e.g. race")
    data.add_argument("--exclude", metavar="FILE", type=Path,
                      help="ids of training pairs to leave out (.txt, or .csv/.json with an "
                      "id column, e.g. a `fairvlm mine` export); validation and test pairs "
                      "stay evaluated")
    fair = parser.add_argument_group("objective")
    fair.add_argument("--lambda", dest="lam", type=float, help="weight of the fairness term "
                      "(0: off; default 0.1)")
    fair.add_argument("--statistic", choices=("loss", "similarity", "reference"))
    fair.add_argument("--distance", choices=("sinkhorn", "wasserstein"))
    fair.add_argument("--blur", type=float, help="Sinkhorn blur (eps = blur^2)")
    fair.add_argument("--fair-on", dest="fair_on", choices=("all", "clean"),
                      help="clean: leave DBPM-flagged pairs out of the fairness term")
    fair.add_argument("--dbpm", choices=("reweight", "drop", "off"))
    fair.add_argument("--beta-np", dest="beta_np", type=float, help="noisy-pair threshold (sd)")
    fair.add_argument("--beta-fp", dest="beta_fp", type=float, help="faulty-pair threshold (sd)")
    fair.add_argument("--warmup", type=int, help="first epoch DBPM judges")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=int)
    optim.add_argument("--lr", type=float, help="AdamW learning rate (1e-5; ~1e-4 for the demo "
                       "model)")
    optim.add_argument("--weight-decay", dest="weight_decay", type=float)
    optim.add_argument("--batch-size", dest="batch_size", type=int,
                       help="global batch size (split across torchrun processes)")
    optim.add_argument("--scope", choices=("full", "last-k", "projections"))
    optim.add_argument("--last-k", dest="last_k", type=int, help="blocks per tower for last-k")
    optim.add_argument("--k-per-group", dest="k_per_group", type=int,
                       help="members of every group in every batch")
    optim.add_argument("--grad-clip", dest="grad_clip", type=float, help="max gradient norm")
    optim.add_argument("--seed", type=int)
    optim.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA if available)")
    optim.add_argument("--no-autocast", dest="autocast", action="store_const", const=False,
                       help="no bfloat16 autocast on CUDA")
    evaluation = parser.add_argument_group("evaluation and checkpoints")
    evaluation.add_argument("--selection", choices=("es_auc", "auc"),
                            help="validation metric that selects the epoch")
    evaluation.add_argument("--eval-min-n", dest="eval_min_n", type=int,
                            help="smallest group counted in ES-AUC")
    evaluation.add_argument("--bootstrap", dest="n_bootstrap", type=int,
                            help="bootstrap resamples of the final reports")
    evaluation.add_argument("--checkpoint-every", dest="checkpoint_every", type=int,
                            metavar="STEPS", help="also checkpoint every STEPS steps")
    run = parser.add_argument_group("run")
    run.add_argument("--run-dir", dest="run_dir", type=Path, required=True, metavar="DIR")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in DIR with its saved settings")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Train; print the summary; return 0, or 128 + signal number when stopped by a signal."""
    from fairvlm.train.loop import train
    from fairvlm.train.worker import StopSignals

    config = build_config(args)
    progress = _ProgressBar(enabled=not args.quiet)
    with StopSignals() as stop, progress:
        result = train(config, args.run_dir, resume=args.resume, stop=stop,
                       on_step=progress.update, progress=not args.quiet)
    if result.state == "cancelled":
        print(f"fine-tune cancelled at step {result.step} of {result.total}; continue with: "
              f"fairvlm train --run-dir {result.run_dir} --resume")
        return stop.exit_status
    if result.selection is not None:
        print(render_summary(result))
    return 0


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The run's :class:`~fairvlm.train.config.TrainConfig`: from the options, or with
    ``--resume`` from the run folder's ``config.json`` (then no setting may be given)."""
    from fairvlm.train.config import TrainConfig, read_exclusions

    given = {field: getattr(args, field) for field in _CONFIG_FIELDS
             if getattr(args, field) is not None}
    if args.resume:
        extra = sorted(given) + (["exclude"] if args.exclude else [])
        if extra:
            option = _OPTION_NAMES.get(extra[0], "--" + extra[0].replace("_", "-"))
            raise ConfigError(f"--resume takes the settings from {args.run_dir / 'config.json'}"
                              f"; drop {option} (start a new run to change settings)")
        path = args.run_dir / "config.json"
        if not path.is_file():
            raise ConfigError(f"{args.run_dir}: no run to resume (no config.json); start it "
                              "without --resume")
        return TrainConfig.from_json(path.read_text(), source=str(path))
    missing = [name for name in ("data", "model", "attribute") if name not in given]
    if missing:
        raise ConfigError(f"--{missing[0]} is required to start a run (or pass --resume to "
                          "continue one)")
    if args.exclude is not None:
        given.update(exclude=read_exclusions(args.exclude),
                     exclude_file=str(args.exclude.resolve()))
    given["data"] = str(Path(given["data"]).expanduser().resolve())
    if Path(given["model"]).expanduser().is_file():  # a checkpoint file, not a model name
        given["model"] = str(Path(given["model"]).expanduser().resolve())
    return TrainConfig(**given)


def render_summary(result: TrainResult) -> str:
    """The end-of-run summary: selected epoch, validation and test AUC / ES-AUC, their change
    on test from the starting model (measurable or within noise), DBPM's flags."""
    selection = result.selection
    lines = [f"fine-tune done: {result.run_dir} ({result.step} steps)",
             describe_selection(selection),
             f"{'':6}{'AUC':>8}{'ES-AUC':>9}"]
    for split, summary in (("val", result.val), ("test", result.test)):
        if summary is not None:
            lines.append(f"{split:6}{_fmt(summary['auc']):>8}{_fmt(summary['es_auc']):>9}")
    if result.change is not None and result.start_test is not None:
        lines.append("test, starting model -> selected (change with its paired 95% interval, "
                     "which covers the test pairs' noise, not the seed's):")
        for key, label in (("auc", "AUC"), ("es_auc", "ES-AUC")):
            change = Change.from_dict(result.change["summary"][key])
            lines.append(f"  {label:7}{_fmt(result.start_test[key])} -> "
                         f"{_fmt(result.test[key])}  "
                         + (f"{change.text()}  {change.verdict}" if change.delta is not None
                            else "undefined"))
    flagged = result.flagged
    lines.append(f"DBPM flagged pairs: {flagged['faulty']} faulty, {flagged['noisy']} noisy "
                 f"(list them: fairvlm mine --run-dir {result.run_dir})")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class _ProgressBar:
    """A tqdm bar over the run's steps, opened at the first step (when the total is known)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None

    def update(self, step: int, total: int, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=step - 1, desc="fine-tuning", unit="step")
        self._bar.update(step - self._bar.n)
        self._bar.set_postfix(epoch=record["epoch"], loss=f"{record['loss']:.3f}")

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.close()
