"""``fairvlm audit``: audit a model's group fairness on a data set and write the report files.

Writes ``metrics.json``, ``predictions.csv`` and ``report.html`` into ``--out`` (see
:mod:`fairvlm.report`) and prints a short summary table and the paths.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairvlm import paths
from fairvlm.config import SCORERS, AuditConfig
from fairvlm.data.table import SPLITS
from fairvlm.errors import ConfigError, DataError
from fairvlm.metrics._groups import UNKNOWN_POLICIES
from fairvlm.metrics._thresholds import THRESHOLD_METHODS

if TYPE_CHECKING:
    from fairvlm.data import PairTable

_DEFAULTS = AuditConfig()
MODEL_SPECS = ("demo, ARCH:TAG (e.g. ViT-B-16:openai), hf-hub:ORG/NAME, or a checkpoint "
               "file")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``audit`` sub-command."""
    parser = subparsers.add_parser(
        "audit", help="audit a model's group fairness and write an HTML report",
        description="Score every pair of a data set with a CLIP-style model (zero-shot or "
        "linear probe), measure AUC, ES-AUC, gaps, DPD and DEOdds per group with bootstrap "
        "intervals, compare each group's loss and similarity distributions with the "
        "population's, and write metrics.json, predictions.csv and report.html.")
    add_data_option(parser)
    parser.add_argument("--model", metavar="SPEC", default="demo",
                        help=f"{MODEL_SPECS} (default: %(default)s)")
    parser.add_argument("--arch", metavar="NAME",
                        help="open_clip architecture of a checkpoint file, when it cannot be "
                        "inferred")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="folder to write metrics.json, predictions.csv and report.html")
    add_audit_options(parser)
    parser.set_defaults(func=run)


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """``--data PATH`` (default: the built-in demo data), as :func:`load_table` reads it."""
    parser.add_argument("--data", metavar="PATH", help="a Harvard-FairVLMed folder, a "
                        ".csv/.parquet manifest, or a folder with manifest.csv (default: the "
                        "built-in demo data)")


def add_audit_options(parser: argparse.ArgumentParser) -> None:
    """The audit's settings (attributes, split, scorer, threshold, bootstrap ...), device and
    ``--quiet``, as :func:`audit_config` reads them (``fairvlm audit`` and ``compare``)."""
    parser.add_argument("--attribute", action="append", dest="attributes", metavar="NAME",
                        help="attribute to audit; repeat for several; race&gender for an "
                        "intersection (default: every attribute of the data; a manifest's "
                        "attribute columns are the ones named here)")
    parser.add_argument("--split", choices=SPLITS, default=_DEFAULTS.split,
                        help="split to audit (default: %(default)s)")
    parser.add_argument("--scorer", choices=SCORERS, default=_DEFAULTS.scorer,
                        help="zero-shot prompts or a linear probe on frozen image embeddings "
                        "(default: %(default)s)")
    parser.add_argument("--prompts", metavar="FILE", type=Path,
                        help='zero-shot prompts, a JSON file {"1": ["glaucoma prompt", ...], '
                        '"0": ["no-glaucoma prompt", ...]} (default: the model\'s prompts)')
    parser.add_argument("--raw-cosine", action="store_true",
                        help="zero-shot softmax over raw cosines, as FairCLIP (default: "
                        "scaled by the model's logit scale)")
    parser.add_argument("--threshold", choices=THRESHOLD_METHODS, default=_DEFAULTS.threshold,
                        help="fixed 0.5, or chosen on the validation split by Youden's J or "
                        "best F1 (default: %(default)s)")
    parser.add_argument("--bootstrap", type=int, metavar="N", default=_DEFAULTS.n_bootstrap,
                        help="bootstrap resamples for the intervals (default: %(default)s)")
    parser.add_argument("--permutations", type=int, metavar="N",
                        default=_DEFAULTS.n_permutations,
                        help="label shuffles of the distribution-distance permutation test "
                        "(default: %(default)s)")
    parser.add_argument("--blur", type=float, default=_DEFAULTS.blur,
                        help="Sinkhorn blur as a fraction of each statistic's standard deviation "
                        "(default: %(default)s)")
    parser.add_argument("--sinkhorn-max-pairs", type=int, metavar="N",
                        default=_DEFAULTS.sinkhorn_max_pairs,
                        help="solve Sinkhorn divergences exactly up to N audited pairs; above, "
                        "on 256-atom summaries of each distribution, with a note (default: "
                        "%(default)s)")
    parser.add_argument("--min-n", type=int, metavar="N", default=_DEFAULTS.min_n,
                        help="hide groups with fewer pairs from the summary (default: "
                        "%(default)s)")
    parser.add_argument("--unknown", choices=UNKNOWN_POLICIES, default=_DEFAULTS.unknown,
                        help="unknown attribute codes as their own group or excluded "
                        "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed,
                        help="seed of the bootstrap, permutations and probe (default: "
                        "%(default)s)")
    parser.add_argument("--device", metavar="DEVICE",
                        help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Load the data and model, audit, write the files and print the summary."""
    from fairvlm.audit import run_audit
    from fairvlm.models import load_model
    from fairvlm.report import write_report

    config = audit_config(args)
    table = load_table(args.data, config)
    loaded = load_model(args.model, device=args.device, arch=args.arch)
    result = run_audit(table, loaded, config, progress=not args.quiet)
    files = write_report(result, args.out)
    print(render_summary(result))
    print(f"\nwrote {files.metrics}\n      {files.predictions}\n      {files.html}")
    return 0


def load_table(data: str | None, config: AuditConfig) -> PairTable:
    """The data set at ``data`` (the built-in demo data when None) with the attributes
    ``config`` audits."""
    from fairvlm.data import load_with_attributes

    data_path = Path(data) if data else paths.demo_data_dir()
    if data is None and not data_path.exists():
        raise DataError(f"{data_path}: no demo data yet; expected it after `fairvlm demo`, "
                        "or pass --data PATH")
    return load_with_attributes(
        data_path, [part for spec in config.attribute_parts() for part in spec])


def audit_config(args: argparse.Namespace) -> AuditConfig:
    """The :class:`AuditConfig` of the options :func:`add_audit_options` added."""
    return AuditConfig(
        attributes=tuple(args.attributes or ()), split=args.split, scorer=args.scorer,
        prompts=_read_prompts(args.prompts) if args.prompts else None,
        use_logit_scale=not args.raw_cosine, threshold=args.threshold, min_n=args.min_n,
        unknown=args.unknown, n_bootstrap=args.bootstrap, n_permutations=args.permutations,
        blur=args.blur, sinkhorn_max_pairs=args.sinkhorn_max_pairs, seed=args.seed)


def _read_prompts(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the prompts file ({error.strerror}); expected "
                          "a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not a JSON prompts file ({error}); expected "
                          '{"1": ["..."], "0": ["..."]}') from None


def render_summary(result) -> str:
    """The short table ``fairvlm audit`` prints: one row per attribute, then warnings."""
    overall = result.overall
    auc = "undefined" if overall["auc"] is None else f"{overall['auc']:.3f}"
    threshold = result.threshold
    lines = [f"{result.config.split}: {overall['n']} pairs, {overall['positives']} positive, "
             f"AUC {auc}; threshold {threshold.value:.3g} ({threshold.method})", ""]
    header = ("attribute", "groups", "AUC", "ES-AUC", "worst group (AUC)", "AUC gap", "DPD",
              "DEOdds")
    rows = [header]
    for audited in result.attributes:
        report = audited.report
        worst = (f"{report.worst_group} ({_fmt(report.worst_group_auc.value)})"
                 if report.worst_group else "undefined")
        rows.append((audited.name, str(sum(g.shown for g in report.groups)),
                     _fmt(report.auc.value), _fmt(report.es_auc.value), worst,
                     _fmt(report.auc_gap.value), _fmt(report.dpd.value),
                     _fmt(report.deodds.value)))
    lines += text_table(rows)
    lines += [f"warning: {line}" for line in result.warnings]
    return "\n".join(lines)


def text_table(rows: list[tuple[str, ...]]) -> list[str]:
    """``rows`` (the first is the header) as left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in rows]


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
