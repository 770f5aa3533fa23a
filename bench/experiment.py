"""Issue 4's experiment: fair fine-tuning methods on the demo, scored against its truth.

Several seeds, a large uncorrupted evaluation set, and bad-pair detection checked against the
generator's record of which pairs it corrupted. Protocol (every number is an option;
``--help`` lists them):

1. Data. The default demo (1,000 subjects, 700/100/200, corrupted training split) with a
   separate, uncorrupted evaluation set (4,000 subjects, every race and language group equally
   likely, ``eval/``); and a clean pretraining set (2,000 subjects, another seed, no
   corruption), all written by :func:`fairvlm.data.demo.generate_demo`.
2. Base model. The demo architecture trained from scratch with the plain CLIP loss on the
   pretraining set's training split (:func:`fairvlm.models.ensure_demo_model`): the analogue
   of a pretrained CLIP. It is the demo model of the experiment's own ``FAIRVLM_HOME``, so
   fine-tunes load it as ``demo`` and are selected with the note-style demo prompts.
3. Fine-tunes (:func:`fairvlm.train.loop.train`) of the base on the demo's corrupted
   training split, one per method of :data:`METHODS` and seed, attribute race, model
   selection on validation ES-AUC. Runs go seed by seed, so a partial experiment holds whole
   seeds; a run folder's name carries a hash of its config, so runs are reused across
   invocations and an interrupted one is resumed.
4. Fairness of the selected checkpoint on the evaluation set (:func:`fairness_row`:
   zero-shot with the demo prompts, fixed threshold 0.5): AUC, ES-AUC, group AUCs and DEOdds
   for race, gender, ethnicity and language, with bootstrap intervals; and for every run but
   ``plain``, its race AUC, ES-AUC and DEOdds change from the ``plain`` run of the same seed
   with paired bootstrap intervals on the same pairs (:func:`paired_row`), so each run's
   change can be judged against the evaluation set's sampling noise.
5. Detection on the training split against ``demo_truth.csv``, with the run's last checkpoint
   and DBPM memory (:func:`detection_row`): precision and recall of DBPM's faulty and noisy
   flags (verdict after the last epoch), per-group false-flag rates, and precision@k and
   AUROC of rankings (:data:`RANKINGS`) for the truly swapped pairs, k = their number.

Outputs (``--out``, ``--name``): ``<name>.csv`` (one row per run), ``<name>.json`` (settings
and rows) and ``<name>.md`` (tables), rewritten after every run so partial results survive;
another invocation with the same settings adds its runs and skips those already there.

Usage (what produced bench/results/experiment*.md)::

    python bench/experiment.py --work /tmp/fvx --threads 1 --scope projections --lr 1e-3 \\
        --seeds 0 1 2 3 4
    python bench/experiment.py --work /tmp/fvx --threads 1 --name experiment-full \\
        --methods reference --seeds 0
    python bench/experiment.py --work /tmp/fvx --threads 1 --name experiment-full \\
        --methods plain fairvlm fairvlm-lam1 fairvlm-lam1-clean
    python bench/experiment.py --name experiment --render     # redraw the tables only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn.functional import normalize

from fairvlm.data import load_dataset
from fairvlm.data.demo import (
    EVAL_FOLDER,
    TRUTH_FILE,
    DemoConfig,
    generate_demo,
    is_complete_demo,
)
from fairvlm.data.table import PairTable
from fairvlm.metrics import DEFAULT_MIN_N, Estimate, roc_auc
from fairvlm.mining import LossMemory
from fairvlm.models import DEMO_PROMPTS, DemoTraining, ensure_demo_model, load_model
from fairvlm.models.loading import LoadedModel
from fairvlm.pair_issues import find_pair_issues, score_pairs
from fairvlm.runs import RunDir
from fairvlm.scoring import compute_embeddings, zero_shot_probabilities
from fairvlm.train.config import TrainConfig
from fairvlm.train.encoders import HeadEncoder
from fairvlm.train.evaluation import attribute_report, change_from_start
from fairvlm.train.loop import train
from fairvlm.train.scope import ProjectionHeads

DATA_FOLDER, PRETRAIN_FOLDER = "data/demo", "data/pretrain"
HOME_FOLDER, RUNS_FOLDER = "home", "runs"
DEFAULT_NAME = "experiment"  # stem of the result files
NOTES_SUFFIX = ".notes.md"  # hand-written findings included at the top of <name>.md
EVAL_ATTRIBUTES: tuple[str, ...] = ("race", "gender", "ethnicity", "language")
AUDIT_SEED = 0  # seed of the evaluation set's bootstrap resamples (the audits')
PAIRED_ATTRIBUTE = "race"  # attribute of the paired differences from the plain run
PAIRED_COLUMNS: dict[str, str] = {"auc": "auc", f"{PAIRED_ATTRIBUTE}_es_auc": "es_auc",
                                  f"{PAIRED_ATTRIBUTE}_deodds": "deodds"}
"""Row column -> :class:`~fairvlm.metrics.PairedChanges` summary key of the paired columns."""
CLEAN, SWAP, DUPLICATE = "none", "faulty_swap", "noisy_duplicate"  # demo_truth.csv corruption
CDR_PATTERN = re.compile(
    r"(?:C/D |cup-to-disc ratio |CDR |vertical c:d |cupping ~|c/d ratio of )(\d+(?:\.\d+)?)")
"""The cup-to-disc ratio phrases of fairvlm/data/demo_notes.py, value captured."""


@dataclass(frozen=True)
class Method:
    """One fine-tuning method: a name, what it is, and its :class:`TrainConfig` settings."""

    name: str
    description: str
    settings: Mapping[str, Any]


BASE = "base"  # the evaluation row of the base model itself (no fine-tune)
PLAIN = "plain"  # the method every other one is compared with, seed by seed
METHODS: tuple[Method, ...] = (
    Method(PLAIN, "plain CLIP fine-tune (lambda 0; DBPM off: flags computed, weights 1)",
           {"lam": 0.0, "dbpm": "off"}),
    Method("reference", "public code: reference statistic, lambda 1e-7, DBPM reweight",
           {"statistic": "reference", "lam": 1e-7, "dbpm": "reweight", "fair_on": "all"}),
    Method("fairvlm", "DBPM reweight + Sinkhorn on per-pair loss, lambda 0.1 (fair_on all)",
           {"lam": 0.1, "dbpm": "reweight", "fair_on": "all"}),
    Method("dbpm", "DBPM reweight alone (lambda 0)", {"lam": 0.0, "dbpm": "reweight"}),
    Method("sinkhorn", "Sinkhorn alone (lambda 0.1, DBPM off)",
           {"lam": 0.1, "dbpm": "off", "fair_on": "all"}),
    Method("fairvlm-clean", "fairvlm, fairness term on unflagged pairs only (fair_on clean)",
           {"lam": 0.1, "dbpm": "reweight", "fair_on": "clean"}),
    Method("fairvlm-lam0.3", "fairvlm at lambda 0.3",
           {"lam": 0.3, "dbpm": "reweight", "fair_on": "all"}),
    Method("fairvlm-lam1", "fairvlm at lambda 1",
           {"lam": 1.0, "dbpm": "reweight", "fair_on": "all"}),
    Method("fairvlm-lam1-clean", "fairvlm at lambda 1, fair_on clean",
           {"lam": 1.0, "dbpm": "reweight", "fair_on": "clean"}),
)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)

RANKINGS: dict[str, str] = {
    "dbpm_z": "DBPM z-score of the weighted mean loss m_i (after the last epoch)",
    "last_epoch_loss": "per-pair batch loss of the last epoch",
    "low_similarity": "lowest image-text cosine u_i . v_i",
    "retrieval_rank": "rank of the true note among the split's notes for the image",
    "disagreement": "note vs image zero-shot disagreement p(1-q) + q(1-p)",
    "bad_pair": "combined bad_pair_score of fairvlm.pair_issues (z, rank, disagreement)",
    "oracle": "|CDR stated in the note - true CDR| (ceiling; terse notes rank last)",
}


@dataclass(frozen=True)
class Settings:
    """Everything that decides the experiment's numbers (saved with the results); which
    methods and seeds are run is chosen per invocation, and rows of every invocation with
    equal settings accumulate in one result set."""

    n_subjects: int = 1000
    eval_size: int = 4000
    pretrain_subjects: int = 2000
    data_seed: int = 0
    pretrain_seed: int = 1001
    base_epochs: int = 15
    attribute: str = "race"
    epochs: int = 6
    lr: float = 1e-4
    batch_size: int = 32
    scope: str = "full"
    last_k: int = 1
    warmup: int = 2
    val_min_n: int = 5
    n_bootstrap: int = 1000
    image_size: int = 128

    def train_settings(self) -> dict[str, Any]:
        """The :class:`~fairvlm.train.config.TrainConfig` fields shared by every run."""
        return {"attribute": self.attribute, "epochs": self.epochs, "lr": self.lr,
                "batch_size": self.batch_size, "scope": self.scope, "last_k": self.last_k,
                "warmup": self.warmup, "selection": "es_auc", "eval_min_n": self.val_min_n,
                "n_bootstrap": 0, "device": "cpu"}


@dataclass(frozen=True)
class Workspace:
    """The experiment's folders under one work folder."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / DATA_FOLDER

    @property
    def eval_data(self) -> Path:
        return self.data / EVAL_FOLDER

    @property
    def pretrain(self) -> Path:
        return self.root / PRETRAIN_FOLDER

    @property
    def home(self) -> Path:
        return self.root / HOME_FOLDER

    def run_dir(self, method: str, seed: int, config: Mapping[str, Any]) -> Path:
        """``<method>-s<seed>-<hash of the run's config>``: other settings, other folder."""
        digest = hashlib.blake2b(json.dumps(config, sort_keys=True).encode(), digest_size=4)
        return self.root / RUNS_FOLDER / f"{method}-s{seed}-{digest.hexdigest()}"


# --- data and base model ---------------------------------------------------------------------

def prepare_data(work: Workspace, settings: Settings) -> None:
    """Write the demo (with its evaluation set) and the clean pretraining set, unless present."""
    demo = DemoConfig(n_subjects=settings.n_subjects, seed=settings.data_seed,
                      image_size=settings.image_size, eval_size=settings.eval_size,
                      eval_oversample_minorities=settings.eval_size > 0)
    pretrain = DemoConfig(n_subjects=settings.pretrain_subjects, seed=settings.pretrain_seed,
                          image_size=settings.image_size).without_corruption()
    for folder, config in ((work.data, demo), (work.pretrain, pretrain)):
        if not is_complete_demo(folder, config):
            generate_demo(folder, config)


def prepare_base_model(work: Workspace, settings: Settings) -> Path:
    """Train (once) the base model on the pretraining set; it is ``FAIRVLM_HOME``'s demo model.

    ``FAIRVLM_HOME`` must point at ``work.home`` (:func:`use_home`).
    """
    training = DemoTraining(epochs=settings.base_epochs, seed=settings.pretrain_seed)
    return ensure_demo_model(work.pretrain, training=training, progress=False)


def use_home(work: Workspace) -> None:
    """Point fairvlm's home (demo model, embedding cache) at the experiment's own folder."""
    work.home.mkdir(parents=True, exist_ok=True)
    os.environ["FAIRVLM_HOME"] = str(work.home)


# --- one run ---------------------------------------------------------------------------------

def fine_tune(work: Workspace, settings: Settings, method: Method, seed: int) -> Path:
    """Fine-tune the base model with ``method``: skipped when the run folder is done,
    resumed when an earlier attempt was interrupted."""
    config = TrainConfig(data=str(work.data), model="demo", seed=seed,
                         **settings.train_settings(), **method.settings)
    run = RunDir(work.run_dir(method.name, seed, config.to_dict()))
    if not run.eval_path.is_file():
        train(config, run.path, resume=run.config_path.is_file())
    return run.path


def selected_model(run: RunDir) -> LoadedModel:
    """The checkpoint a finished run selected on validation (``eval.json``)."""
    evaluation = json.loads(run.eval_path.read_text())
    return load_model(str(run.path / evaluation["checkpoint"]), device="cpu")


def run_row(run: RunDir, images: EvalImages, train_table: PairTable, truth: pd.DataFrame,
            *, n_bootstrap: int, baseline: np.ndarray | None = None) -> dict[str, Any]:
    """One finished run's numbers: the selected epoch, the summed step time and forward passes
    (``metrics.jsonl``), :func:`fairness_row` of the selected checkpoint, with a
    ``baseline`` (the plain run's evaluation probabilities, same seed) :func:`paired_row`,
    and :func:`detection_row` of the last checkpoint with the run's DBPM memory."""
    evaluation = json.loads(run.eval_path.read_text())
    steps = [record for record in run.read_metrics() if record["kind"] == "step"]
    row = {"selected_epoch": evaluation["selection"]["epoch"],
           "step_seconds": round(sum(record["seconds"] for record in steps), 1),
           "forward_passes": float(np.mean([record["forward_passes"] for record in steps]))}
    probabilities = images.probabilities(selected_model(run))
    row.update(fairness_row(probabilities, images.table, n_bootstrap=n_bootstrap))
    if baseline is not None:
        row.update(paired_row(baseline, probabilities, images.table, n_bootstrap=n_bootstrap))
    last = load_model(str(run.latest_checkpoint()), device="cpu")
    row.update(detection_row(last, train_table, truth, memory=LossMemory.load(run.memory_path)))
    return row


class EvalImages:
    """Unit image embeddings of the evaluation set for every checkpoint of the experiment.

    With scope ``projections`` every fine-tune shares the base model's frozen towers, so their
    outputs on the evaluation set are computed once (:class:`~fairvlm.train.encoders.
    HeadEncoder`) and each checkpoint only applies its own image projection
    (:class:`~fairvlm.train.scope.ProjectionHeads`); otherwise the whole model runs
    (:func:`~fairvlm.scoring.compute_embeddings`).
    """

    def __init__(self, base: LoadedModel, table: PairTable, *, scope: str) -> None:
        self.table = table
        self.features = (HeadEncoder(base, table, autocast=False).image_features
                         if scope == "projections" else None)

    def embed(self, loaded: LoadedModel) -> np.ndarray:
        """``u_i`` of every evaluation pair under ``loaded``'s weights, ``[n, D]``."""
        if self.features is None:
            return compute_embeddings(loaded, self.table, cache=False).image
        with torch.inference_mode():
            image = ProjectionHeads(loaded.model).image_embedding(self.features)
        return normalize(image.float(), dim=-1).cpu().numpy()

    def probabilities(self, loaded: LoadedModel) -> np.ndarray:
        """Zero-shot ``p(glaucoma)`` of every evaluation pair under ``loaded``: the demo
        prompts, logit-scaled (:func:`~fairvlm.scoring.zero_shot_probabilities`), as
        :func:`fairvlm.train.evaluation.zero_shot_report` scores validation."""
        return zero_shot_probabilities(loaded, self.embed(loaded), DEMO_PROMPTS)


def fairness_row(probabilities: np.ndarray, table: PairTable, *,
                 n_bootstrap: int) -> dict[str, Any]:
    """Zero-shot fairness of a model on the evaluation set ``table``, flattened to one row.

    ``probabilities`` from :meth:`EvalImages.probabilities`, the fixed 0.5 threshold, groups
    below :data:`~fairvlm.metrics.DEFAULT_MIN_N` hidden, resamples of seed
    :data:`AUDIT_SEED`: the report of :func:`fairvlm.train.evaluation.attribute_report`,
    which fine-tunes use on validation. Columns ``auc`` (with ``_lo``/``_hi`` bootstrap
    bounds), then per attribute a: ``a_es_auc``, ``a_deodds`` (with bounds),
    ``a_worst_group_auc``, ``a_auc_gap`` and ``a_auc_<group>`` per group (undefined values
    are NaN).
    """
    row: dict[str, Any] = {}
    for name in EVAL_ATTRIBUTES:
        report = attribute_report(table, table.attribute(name), probabilities,
                                  min_n=DEFAULT_MIN_N, n_bootstrap=n_bootstrap, seed=AUDIT_SEED)
        if "auc" not in row:
            row.update(_estimate_columns("auc", report.auc))
        row.update(_estimate_columns(f"{name}_es_auc", report.es_auc))
        row.update(_estimate_columns(f"{name}_deodds", report.deodds))
        row[f"{name}_worst_group_auc"] = _number(report.worst_group_auc.value)
        row[f"{name}_auc_gap"] = _number(report.auc_gap.value)
        for group in report.groups:
            row[f"{name}_auc_{group.name}"] = _number(group.auc.value)
    return row


def paired_row(baseline: np.ndarray, probabilities: np.ndarray, table: PairTable, *,
               n_bootstrap: int) -> dict[str, Any]:
    """How a run's evaluation metrics differ from the plain run's of the same seed, on the same
    pairs, with paired bootstrap intervals (:func:`~fairvlm.metrics.paired_changes` through
    :func:`fairvlm.train.evaluation.change_from_start`; the settings and resamples of
    :func:`fairness_row`, attribute :data:`PAIRED_ATTRIBUTE`).

    For every column ``c`` of :data:`PAIRED_COLUMNS` (``delta = c(run) - c(plain)``):
    ``paired_c_lo`` and ``paired_c_hi``, the bounds of the delta's interval, and
    ``paired_c_sign``: +1 or -1 when the interval excludes 0 (a measurable change up or
    down), 0 when it holds 0, NaN when undefined.
    """
    changes = change_from_start(table, table.attribute(PAIRED_ATTRIBUTE), baseline,
                                probabilities, min_n=DEFAULT_MIN_N, n_bootstrap=n_bootstrap,
                                seed=AUDIT_SEED)
    row: dict[str, Any] = {}
    for column, metric in PAIRED_COLUMNS.items():
        change = changes.summary[metric]
        row[f"paired_{column}_lo"] = _number(change.ci_low)
        row[f"paired_{column}_hi"] = _number(change.ci_high)
        row[f"paired_{column}_sign"] = _number(change.sign)
    return row


def _estimate_columns(name: str, estimate: Estimate) -> dict[str, float]:
    return {name: _number(estimate.value), f"{name}_lo": _number(estimate.ci_low),
            f"{name}_hi": _number(estimate.ci_high)}


def _number(value: float | int | None) -> float:
    return math.nan if value is None else float(value)


# --- detection -------------------------------------------------------------------------------

def note_cdr(text: str) -> float:
    """The cup-to-disc ratio a demo note states (as demo_notes.py writes it), NaN if none."""
    found = CDR_PATTERN.search(text)
    return float(found.group(1)) if found else math.nan


def read_truth(data_dir: Path) -> pd.DataFrame:
    """``demo_truth.csv`` of a demo folder, indexed by pair id (the npz file stem)."""
    truth = pd.read_csv(data_dir / TRUTH_FILE)
    truth.index = truth["filename"].str.replace(r"\.npz$", "", regex=True)
    return truth


def precision_at_k(scores: np.ndarray, positive: np.ndarray, k: int) -> float:
    """Share of true positives among the k highest scores, ties broken at random (expected).

    With t the k-th highest score, A the pairs above t and T those tied at t::

        P@k = (#positives in A + (k - |A|) * #positives in T / |T|) / k

    NaN scores rank below every number.
    """
    values = np.where(np.isnan(scores), -np.inf, np.asarray(scores, dtype=np.float64))
    positive = np.asarray(positive, dtype=bool)
    if not 0 < k <= values.size:
        return math.nan
    threshold = np.sort(values)[::-1][k - 1]
    above, tied = values > threshold, values == threshold
    hits = positive[above].sum() + (k - above.sum()) * positive[tied].mean()
    return float(hits / k)


def flag_quality(flags: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """``(precision, recall)`` of boolean flags; precision is NaN without flags."""
    flags, positive = np.asarray(flags, dtype=bool), np.asarray(positive, dtype=bool)
    hits = float((flags & positive).sum())
    precision = hits / flags.sum() if flags.any() else math.nan
    recall = hits / positive.sum() if positive.any() else math.nan
    return precision, recall


def ranking_scores(scores: pd.DataFrame, issues: pd.DataFrame, truth: pd.DataFrame,
                   texts: np.ndarray, memory: LossMemory | None = None
                   ) -> dict[str, np.ndarray]:
    """Every ranking of :data:`RANKINGS` (higher = more suspicious), row-aligned with ``scores``.

    ``dbpm_z`` and ``last_epoch_loss`` need the run's DBPM ``memory``; without it they are
    left out.
    """
    ids = scores["id"].to_numpy()
    stated = np.array([note_cdr(text) for text in texts])
    rankings = {
        "low_similarity": -scores["similarity"].to_numpy(dtype=np.float64),
        "retrieval_rank": scores["rank"].to_numpy(dtype=np.float64),
        "disagreement": issues["label_disagreement_score"].to_numpy(dtype=np.float64),
        "bad_pair": issues["bad_pair_score"].to_numpy(dtype=np.float64),
        "oracle": np.abs(stated - truth.loc[ids, "cdr"].to_numpy(dtype=np.float64)),
    }
    if memory is not None:
        last = memory.epochs_recorded - 1
        rankings["dbpm_z"] = issues["faulty_score"].to_numpy(dtype=np.float64)
        rankings["last_epoch_loss"] = memory.history[memory.rows(ids), last]
    return {name: rankings[name] for name in RANKINGS if name in rankings}


def detection_row(loaded: LoadedModel, train_table: PairTable, truth: pd.DataFrame, *,
                  memory: LossMemory | None = None) -> dict[str, Any]:
    """Detection quality on the training split, flattened to one row.

    Columns: ``n_swapped`` (= k), ``n_duplicates``; with a memory ``faulty_flags``,
    ``faulty_precision``/``faulty_recall`` (against swapped notes), ``noisy_flags``,
    ``noisy_precision``/``noisy_recall`` (against near-duplicate pairs), and
    ``false_flag_<attribute>_<group>``: the share of uncorrupted pairs of the group that DBPM
    flags (faulty or noisy); for every ranking r, ``p_at_k_<r>`` and ``auroc_<r>`` against
    the swapped notes.
    """
    scores = score_pairs(loaded, train_table, prompts=DEMO_PROMPTS)
    issues = find_pair_issues(scores, memory=memory)
    ids = scores["id"].to_numpy()
    corruption = truth.loc[ids, "corruption"].to_numpy()
    swapped, duplicate, clean = corruption == SWAP, corruption == DUPLICATE, corruption == CLEAN
    row: dict[str, Any] = {"n_swapped": int(swapped.sum()), "n_duplicates": int(duplicate.sum())}
    if memory is not None:
        faulty = issues["is_faulty_issue"].to_numpy(dtype=bool)
        noisy = issues["is_noisy_issue"].to_numpy(dtype=bool)
        row["faulty_flags"] = int(faulty.sum())
        row["faulty_precision"], row["faulty_recall"] = flag_quality(faulty, swapped)
        row["noisy_flags"] = int(noisy.sum())
        row["noisy_precision"], row["noisy_recall"] = flag_quality(noisy, duplicate)
        for name in ("race", "language"):
            attribute, codes = train_table.attribute(name), train_table.group_codes(name)
            for code in np.unique(codes):
                members = clean & (codes == code)
                row[f"false_flag_{name}_{attribute.group_name(code)}"] = (
                    float((faulty | noisy)[members].mean()) if members.any() else math.nan)
    texts = train_table.frame["text"].to_numpy()
    for name, values in ranking_scores(scores, issues, truth, texts, memory).items():
        row[f"p_at_k_{name}"] = precision_at_k(values, swapped, int(swapped.sum()))
        filled = np.where(np.isnan(values), np.nanmin(values) - 1.0, values)
        row[f"auroc_{name}"] = roc_auc(swapped.astype(np.int64), filled)
    return row


# --- the experiment --------------------------------------------------------------------------

@dataclass
class Results:
    """The rows so far, and where they are written: ``<out>/<name>.csv``, ``.json``, ``.md``."""

    out: Path
    name: str
    settings: Settings
    rows: list[dict[str, Any]] = field(default_factory=list)

    def path(self, suffix: str) -> Path:
        return self.out / f"{self.name}{suffix}"

    @classmethod
    def resume(cls, out: Path, name: str, settings: Settings) -> Results:
        """Rows of an earlier experiment with the same settings (else none)."""
        results = cls(out, name, settings)
        if results.path(".json").is_file():
            saved = json.loads(results.path(".json").read_text())
            if saved.get("settings") == _jsonable(asdict(settings)):
                results.rows = saved["runs"]
        return results

    @classmethod
    def load(cls, out: Path, name: str) -> Results:
        """The results saved as ``<out>/<name>.json`` (to render the tables again)."""
        saved = json.loads((out / f"{name}.json").read_text())
        values = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in saved["settings"].items()}
        return cls(out, name, Settings(**values), saved["runs"])

    def done(self, method: str, seed: int | None) -> bool:
        return any(r["method"] == method and r["seed"] == seed for r in self.rows)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.write()

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(self.rows)
        frame.to_csv(self.path(".csv"), index=False, float_format="%.6g")
        payload = {"settings": _jsonable(asdict(self.settings)),
                   "methods": {m.name: {"description": m.description, **m.settings}
                               for m in METHODS},
                   "rankings": RANKINGS, "runs": self.rows}
        text = json.dumps(_without_nan(payload), indent=1, allow_nan=False)
        self.path(".json").write_text(text + "\n")
        notes = self.path(NOTES_SUFFIX)
        findings = notes.read_text() if notes.is_file() else ""
        self.path(".md").write_text(markdown_report(frame, self.settings, findings=findings))


def run_experiment(work: Workspace, out: Path, settings: Settings, *,
                   name: str = DEFAULT_NAME,
                   methods: Sequence[str] = tuple(m.name for m in METHODS),
                   seeds: Sequence[int] = DEFAULT_SEEDS,
                   log: Callable[[str], None] = print) -> Results:
    """Prepare data and base model, then fine-tune, evaluate and score every run of
    ``methods`` x ``seeds`` (seed by seed) that ``out`` does not hold yet."""
    use_home(work)
    started = time.perf_counter()
    prepare_data(work, settings)
    log(f"data ready ({time.perf_counter() - started:.0f} s)")
    base = load_model(str(prepare_base_model(work, settings)), device="cpu")
    images = EvalImages(base, load_dataset(work.eval_data), scope=settings.scope)
    log(f"base model and evaluation set ready ({time.perf_counter() - started:.0f} s)")
    train_table = load_dataset(work.data).subset("train")
    truth = read_truth(work.data)
    results = Results.resume(out, name, settings)
    if not results.done(BASE, None):
        row = {"method": BASE, "seed": None, "selected_epoch": None}
        row.update(fairness_row(images.probabilities(base), images.table,
                                n_bootstrap=settings.n_bootstrap))
        row.update(detection_row(base, train_table, truth))
        results.add(row)
        log(f"base: AUC {row['auc']:.3f}, race ES-AUC {row['race_es_auc']:.3f}")
    method_named = {m.name: m for m in METHODS}
    baselines: dict[int, np.ndarray] = {}  # the plain run's evaluation probabilities by seed
    for seed in seeds:
        for name in methods:
            if results.done(name, seed):
                continue
            if name != PLAIN and seed not in baselines:
                plain = RunDir(fine_tune(work, settings, method_named[PLAIN], seed))
                baselines[seed] = images.probabilities(selected_model(plain))
            started_run = time.perf_counter()
            run = RunDir(fine_tune(work, settings, method_named[name], seed))
            row = {"method": name, "seed": seed,
                   **run_row(run, images, train_table, truth, n_bootstrap=settings.n_bootstrap,
                             baseline=baselines.get(seed) if name != PLAIN else None)}
            row["total_seconds"] = round(time.perf_counter() - started_run, 1)
            results.add(row)
            log(f"{name} seed {seed}: {row['total_seconds']:.0f} s, selected epoch "
                f"{row['selected_epoch']}, AUC {row['auc']:.3f}, race ES-AUC "
                f"{row['race_es_auc']:.3f}, DBPM P@k {row['p_at_k_dbpm_z']:.2f}")
    log(f"done ({time.perf_counter() - started:.0f} s)")
    return results


# --- tables ----------------------------------------------------------------------------------

def markdown_report(frame: pd.DataFrame, settings: Settings, *, findings: str = "") -> str:
    """The experiment's tables in markdown (mean ± std over seeds), after ``findings`` (the
    hand-written reading of the numbers, kept in ``<name>.notes.md``)."""
    lines = [
        "# Experiment: fair fine-tuning on the synthetic demo (generated by bench/experiment.py)",
        "",
        f"Settings: {_settings_line(settings)}.",
        "",
        "Methods: " + "; ".join(f"`{m.name}`: {m.description}" for m in METHODS
                                if m.name in set(frame.get("method", ()))) + ".",
        "",
        "Cells are mean ± standard deviation over seeds (n: runs); `[lo, hi]` is the "
        "95% bootstrap interval on the evaluation set, averaged over seeds. `base` is the "
        "pretrained model before any fine-tune.",
        "",
    ]
    if findings:
        lines += [findings.strip(), ""]
    if frame.empty:
        return "\n".join(lines) + "\n"
    for attribute in EVAL_ATTRIBUTES:
        lines += [f"## Zero-shot fairness on the evaluation set: {attribute}", "",
                  _fairness_table(frame, attribute), ""]
    lines += ["## Paired differences from `plain` (same seed; race)", "",
              _paired_table(frame), ""]
    if note := _paired_note(frame):
        lines += [note, ""]
    lines += ["## Cost of a fine-tune (2 shared CPU cores; wall times vary with the load)", "",
              _cost_table(frame), "",
              "## DBPM flags on the training split (verdict after the last epoch)", "",
              _flags_table(frame), "",
              "## Rankings of the swapped notes: precision@k (k = number of swapped pairs)", "",
              _ranking_table(frame, "p_at_k"), "",
              "## Rankings of the swapped notes: AUROC", "",
              _ranking_table(frame, "auroc"), "",
              "Rankings: " + "; ".join(f"`{k}`: {v}" for k, v in RANKINGS.items()) + ".", ""]
    return "\n".join(lines) + "\n"


def _settings_line(settings: Settings) -> str:
    return (f"demo {settings.n_subjects} subjects (seed {settings.data_seed}), evaluation set "
            f"{settings.eval_size} (minorities oversampled), base model pretrained "
            f"{settings.base_epochs} epochs on {settings.pretrain_subjects} clean subjects "
            f"(seed {settings.pretrain_seed}); fine-tune scope {settings.scope}, "
            f"{settings.epochs} epochs, lr {settings.lr:g}, batch {settings.batch_size}, "
            f"attribute {settings.attribute}, DBPM warm-up {settings.warmup}, selection on "
            f"validation ES-AUC (groups of >= {settings.val_min_n}), "
            f"{settings.n_bootstrap} bootstrap resamples")


def _method_order(frame: pd.DataFrame) -> list[str]:
    present = set(frame["method"])
    return [name for name in (BASE, *(m.name for m in METHODS)) if name in present]


def _cell(values: pd.Series, digits: int = 3) -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _interval(lo: pd.Series, hi: pd.Series) -> str:
    if lo.dropna().empty:
        return ""
    return f" [{lo.mean():.2f}, {hi.mean():.2f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _fairness_table(frame: pd.DataFrame, attribute: str) -> str:
    prefix = f"{attribute}_auc_"
    groups = [c[len(prefix):] for c in frame.columns
              if c.startswith(prefix) and c != f"{attribute}_auc_gap"]
    header = ["method", "n", "AUC", "ES-AUC", *(f"AUC {g}" for g in groups), "DEOdds"]
    rows = []
    for method in _method_order(frame):
        part = frame[frame["method"] == method]
        rows.append([
            method, str(len(part)),
            _cell(part["auc"]) + _interval(part["auc_lo"], part["auc_hi"]),
            _cell(part[f"{attribute}_es_auc"])
            + _interval(part[f"{attribute}_es_auc_lo"], part[f"{attribute}_es_auc_hi"]),
            *(_cell(part[prefix + g]) for g in groups),
            _cell(part[f"{attribute}_deodds"]),
        ])
    return _table(header, rows)


def _paired_table(frame: pd.DataFrame) -> str:
    """Mean ± std over seeds of each method's difference from ``plain`` (same seed), and per
    metric of :data:`PAIRED_COLUMNS` how many seeds' paired intervals exclude 0, up / down
    (``—`` for result files written before the paired columns existed)."""
    metrics = {"AUC": "auc", "ES-AUC": "race_es_auc", "worst-group AUC": "race_worst_group_auc",
               "AUC Black": "race_auc_Black", "DEOdds": "race_deodds"}
    counted = {label: column for label, column in metrics.items() if column in PAIRED_COLUMNS}
    plain = frame[frame["method"] == PLAIN].set_index("seed")
    if plain.empty:
        return "(no plain runs yet)"
    rows = [["plain: seed std", str(len(plain)),
             *(f"{plain[c].std(ddof=1):.3f}" if plain[c].count() > 1 else "—"
               for c in metrics.values()), *("—" for _ in counted)]]
    for method in _method_order(frame):
        if method in (BASE, PLAIN):
            continue
        part = frame[frame["method"] == method].set_index("seed")
        seeds = part.index.intersection(plain.index)
        rows.append([method, str(len(seeds)),
                     *(_cell(part.loc[seeds, c] - plain.loc[seeds, c], 3) for c in
                       metrics.values()),
                     *(_sign_counts(part.loc[seeds].get(f"paired_{c}_sign"))
                       for c in counted.values())])
    return _table(["method", "seeds", *(f"Δ {m}" for m in metrics),
                   *(f"{m}: seeds measurably up/down" for m in counted)], rows)


def _sign_counts(signs: pd.Series | None) -> str:
    """``up/down of n``: seeds whose paired interval lies above / below 0, of those with one."""
    signs = pd.Series(dtype=float) if signs is None else signs.dropna()
    if signs.empty:
        return "—"
    return f"{int((signs > 0).sum())}/{int((signs < 0).sum())} of {len(signs)}"


def _paired_note(frame: pd.DataFrame) -> str:
    """How wide one run's paired interval is, next to the seed-to-seed spread of ``plain``."""
    plain = frame.loc[frame["method"] == PLAIN]
    parts = []
    for column in PAIRED_COLUMNS:
        if f"paired_{column}_lo" not in frame or column not in plain or plain[column].count() < 2:
            continue
        width = (frame[f"paired_{column}_hi"] - frame[f"paired_{column}_lo"]).dropna()
        if not width.empty:
            parts.append(f"{column} {width.median():.3f} (plain's seed std "
                         f"{plain[column].std(ddof=1):.3f})")
    if not parts:
        return ""
    return ("A seed counts as measurably up (down) when the 95% paired bootstrap interval of "
            "its difference from `plain` of the same seed, on the same evaluation pairs, lies "
            "above (below) 0. Median width of those intervals: " + "; ".join(parts) + ".")


def _cost_table(frame: pd.DataFrame) -> str:
    rows = []
    for method in _method_order(frame):
        part = frame[frame["method"] == method]
        if method != BASE and "step_seconds" in part:
            rows.append([method, _cell(part["forward_passes"], 1), _cell(part["step_seconds"], 1)])
    return _table(["method", "forward passes per step", "seconds in training steps"], rows)


def _flags_table(frame: pd.DataFrame) -> str:
    false_flags = [c for c in frame.columns if c.startswith("false_flag_")]
    header = ["method", "faulty flags", "faulty precision", "faulty recall", "DBPM P@k",
              "noisy flags", "noisy precision", "noisy recall",
              *(c[len("false_flag_"):].replace("_", " ") + " false-flag" for c in false_flags)]
    rows = []
    for method in _method_order(frame):
        part = frame[frame["method"] == method]
        if "faulty_flags" not in part or part["faulty_flags"].isna().all():
            continue
        rows.append([method, _cell(part["faulty_flags"], 1), _cell(part["faulty_precision"], 2),
                     _cell(part["faulty_recall"], 2), _cell(part["p_at_k_dbpm_z"], 2),
                     _cell(part["noisy_flags"], 1), _cell(part["noisy_precision"], 2),
                     _cell(part["noisy_recall"], 2),
                     *(_cell(part[c], 3) for c in false_flags)])
    k = frame["n_swapped"].dropna()
    note = (f"\n\nk = {int(k.iloc[0])} swapped notes and {int(frame['n_duplicates'].iloc[0])} "
            "near-duplicate pairs in the training split." if not k.empty else "")
    return _table(header, rows) + note


def _ranking_table(frame: pd.DataFrame, kind: str) -> str:
    names = [name for name in RANKINGS if f"{kind}_{name}" in frame.columns]
    rows = [[method, *(_cell(frame.loc[frame["method"] == method, f"{kind}_{name}"], 2)
                       for name in names)] for method in _method_order(frame)]
    return _table(["method", *names], rows)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _without_nan(value: Any) -> Any:
    """``value`` with every float NaN replaced by None (JSON null), recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    return value


# --- command line ----------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options: :class:`Settings` fields plus the run plan and folders."""
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("fairvlm-experiment"),
                        help="folder for data, base model, embedding cache and runs")
    parser.add_argument("--out", type=Path, default=Path("bench/results"),
                        help="folder receiving experiment.csv/.json/.md")
    parser.add_argument("--name", default=DEFAULT_NAME,
                        help="stem of the result files in --out (<name>.csv, .json, .md; "
                             "<name>.notes.md, if present, is included in <name>.md)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch CPU threads (1 is much faster when other processes load "
                             "the cores)")
    parser.add_argument("--methods", nargs="+", choices=[m.name for m in METHODS],
                        default=[m.name for m in METHODS])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the CSV and markdown from <out>/<name>.json")
    for item in fields(Settings):
        parser.add_argument("--" + item.name.replace("_", "-"), dest=item.name,
                            type=type(getattr(defaults, item.name)),
                            default=getattr(defaults, item.name))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    out = args.out.resolve()
    if args.render:
        Results.load(out, args.name).write()
        return
    torch.set_num_threads(args.threads)
    settings = Settings(**{item.name: getattr(args, item.name) for item in fields(Settings)})

    def log(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    run_experiment(Workspace(args.work.resolve()), out, settings, name=args.name,
                   methods=args.methods, seeds=args.seeds, log=log)


if __name__ == "__main__":
    main()
