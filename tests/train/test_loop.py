"""The fine-tuning loop on the small demo with a tiny random model (projections scope).

Numbers are checked against independent computations: open_clip's ClipLoss and geomloss on
the first batch, sklearn's AUC on the selected checkpoint, and the DBPM drop rule.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from geomloss import SamplesLoss
from open_clip.loss import ClipLoss
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

from fairvlm.data import load_dataset
from fairvlm.data.torch_dataset import PairDataset
from fairvlm.mining import LossMemory
from fairvlm.models import load_model
from fairvlm.runs import RunDir
from fairvlm.scoring import compute_embeddings, zero_shot_probabilities
from fairvlm.train.config import TrainConfig
from fairvlm.train.encoders import HeadEncoder
from fairvlm.train.evaluation import Selection
from fairvlm.train.loop import train
from fairvlm.train.sampler import GroupAwareBatchSampler

BATCH = 32


@pytest.fixture(scope="module")
def finished(reference_run: RunDir) -> tuple[TrainConfig, RunDir]:
    """The reference run (conftest.py) and its settings."""
    return TrainConfig.from_dict(reference_run.read_config()), reference_run


def test_run_folder_is_complete(finished):
    config, run = finished
    assert run.read_config() == config.to_dict()
    status = run.read_status()
    steps_per_epoch = len([r for r in run.read_metrics() if r["kind"] == "step"]) // 2
    assert (status.state, status.step, status.total) == ("done", 2 * steps_per_epoch,
                                                         2 * steps_per_epoch)
    records = run.read_metrics()
    kinds = [r["kind"] for r in records]
    assert kinds == ["baseline"] + ["step"] * steps_per_epoch + ["epoch"] \
        + ["step"] * steps_per_epoch + ["epoch"]
    for record in (r for r in records if r["kind"] == "step"):
        assert {"loss", "clip", "fairness", "weighted_fairness", "group_distances",
                "skipped_groups", "flagged", "mean_weight", "grad_norm"} <= record.keys()
        assert set(record["group_distances"]) == {"Asian", "Black", "White"}
        assert record["loss"] == pytest.approx(
            record["clip"] + config.lam * record["fairness"], rel=1e-5)
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert all({"noisy", "faulty", "mu", "sigma", "val", "selected_epoch"} <= e.keys()
               for e in epochs)
    assert {"auc", "es_auc", "group_auc"} <= epochs[0]["val"].keys()
    checkpoints = sorted(p.name for p in run.checkpoints_dir.glob("e*.safetensors")
                         if "." not in p.stem)
    assert 1 <= len(checkpoints) <= 2 and run.latest_checkpoint().name == checkpoints[-1]
    loaded = load_model(str(run.latest_checkpoint()), device="cpu")  # a usable model spec
    assert loaded.arch == "fairvlm-demo-rn"
    assert not list(run.checkpoints_dir.glob(".*"))  # no temporary files left
    evaluation = json.loads(run.eval_path.read_text())
    assert {"selection", "checkpoint", "val", "test", "flagged", "prompts"} <= evaluation.keys()
    log = run.log_path.read_text()
    assert "starting model" in log and "done: epoch 1 selected by validation" in log
    assert "epoch 2/2: loss " in log  # epochs counted from 1 (checkpoints e0000, e0001)
    assert LossMemory.load(run.memory_path).epochs == 2


def _first_batch(config: TrainConfig):
    """Rows and per-pair quantities of step 1, computed without the training loop."""
    table = load_dataset(config.data)
    train_rows = table.split_indices("train")
    codes = table.group_codes("race")[train_rows]
    sampler = GroupAwareBatchSampler(codes, BATCH, min_per_group=4, seed=config.seed)
    positions = sampler.global_batches(0)[0]
    loaded = load_model(config.model, device="cpu")
    dataset = PairDataset(table, train_rows[positions], loaded.preprocess, loaded.tokenizer)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    tokens = torch.stack([dataset[i][1] for i in range(len(dataset))])
    with torch.no_grad():
        image_features, text_features, scale = loaded.model(images, tokens)
    return (table.ids[train_rows[positions]], sampler.group_index[positions], image_features,
            text_features, scale)


def test_first_step_matches_open_clip_and_geomloss(finished):
    config, run = finished
    ids, groups, image, text, scale = _first_batch(config)
    first = next(r for r in run.read_metrics() if r["kind"] == "step")
    assert first["clip"] == pytest.approx(ClipLoss()(image, text, scale).item(), rel=1e-5)
    logits = scale * image @ text.T
    targets = torch.arange(len(ids))
    per_pair = 0.5 * (torch.nn.functional.cross_entropy(logits, targets, reduction="none")
                      + torch.nn.functional.cross_entropy(logits.T, targets, reduction="none"))
    values = per_pair.double()[:, None]  # geomloss, annealed slowly enough to converge
    sinkhorn = SamplesLoss("sinkhorn", p=2, blur=config.blur, scaling=0.99)
    expected = sum(sinkhorn(values[groups == g], values).item() for g in range(3))
    assert first["fairness"] == pytest.approx(expected, rel=5e-3, abs=1e-5)
    # DBPM recorded these raw losses under the pairs' ids (pairs drawn once in epoch 0)
    memory = LossMemory.load(run.memory_path)
    once = memory.loss_count[memory.rows(ids), 0] == 1
    np.testing.assert_allclose(memory.history[memory.rows(ids), 0][once],
                               per_pair.numpy()[once], rtol=1e-5)


def test_every_training_pair_is_recorded_every_epoch(finished):
    config, run = finished
    memory = LossMemory.load(run.memory_path)
    table = load_dataset(config.data)
    assert sorted(memory.ids) == sorted(table.ids[table.split_indices("train")])
    steps_per_epoch = run.read_status().total // 2
    assert (memory.loss_count >= 1).all()
    assert (memory.loss_count.sum(axis=0) == steps_per_epoch * BATCH).all()


def test_drop_mode_gives_flagged_pairs_zero_weight(finished):
    _, run = finished
    steps = [r for r in run.read_metrics() if r["kind"] == "step"]
    assert all(r["flagged"] == 0 and r["mean_weight"] == 1.0 for r in steps if r["epoch"] == 0)
    judged = [r for r in steps if r["epoch"] == 1]
    assert sum(r["flagged"] for r in judged) > 0
    for record in judged:
        assert record["mean_weight"] == pytest.approx(1 - record["flagged"] / BATCH, abs=1e-6)


def test_selection_on_validation_and_test_scored_at_the_selected_epoch(finished):
    config, run = finished
    evaluation = json.loads(run.eval_path.read_text())
    values = [r["val"]["es_auc"] for r in run.read_metrics() if r["kind"] == "epoch"]
    assert None not in values
    assert evaluation["selection"]["epoch"] == int(np.argmax(values))
    selected = run.path / evaluation["checkpoint"]
    assert selected.is_file()
    loaded = load_model(str(selected), device="cpu")
    table = load_dataset(config.data).subset("test")
    image = compute_embeddings(loaded, table, cache=False).image
    probability = zero_shot_probabilities(loaded, image, loaded.default_prompts)
    auc = roc_auc_score(table.labels, probability)
    codes = table.group_codes("race")
    group_auc = [roc_auc_score(table.labels[codes == g], probability[codes == g])
                 for g in np.unique(codes) if len(set(table.labels[codes == g])) == 2]
    assert evaluation["test"]["auc"]["value"] == pytest.approx(auc, abs=1e-9)
    assert evaluation["test"]["es_auc"]["value"] == pytest.approx(
        auc / (1 + sum(abs(a - auc) for a in group_auc)), abs=1e-9)
    assert evaluation["test"]["n"] == len(table)


def test_change_from_the_starting_model_on_test(finished):
    """eval.json's change from the starting model: the starting weights' test AUC (sklearn on
    a fresh load of the run's model spec) and the paired interval around the change."""
    config, run = finished
    evaluation = json.loads(run.eval_path.read_text())
    table = load_dataset(config.data).subset("test")

    def test_auc(spec: str) -> float:
        loaded = load_model(spec, device="cpu")
        image = compute_embeddings(loaded, table, cache=False).image
        return roc_auc_score(table.labels,
                             zero_shot_probabilities(loaded, image, loaded.default_prompts))

    start, selected = test_auc(config.model), test_auc(str(run.path / evaluation["checkpoint"]))
    assert evaluation["start_test"]["auc"] == pytest.approx(start, abs=1e-9)
    change = evaluation["change_from_start"]
    assert (change["n_bootstrap"], change["seed"]) == (config.n_bootstrap, config.seed)
    auc = change["summary"]["auc"]
    assert auc["delta"] == pytest.approx(selected - start, abs=1e-9)
    assert auc["ci_low"] <= auc["delta"] <= auc["ci_high"]
    es_auc = change["summary"]["es_auc"]
    assert es_auc["delta"] == pytest.approx(
        evaluation["test"]["es_auc"]["value"] - evaluation["start_test"]["es_auc"], abs=1e-9)
    assert es_auc["sign"] == (0 if es_auc["ci_low"] <= 0 <= es_auc["ci_high"]
                              else (1 if es_auc["ci_low"] > 0 else -1))


@pytest.fixture(scope="module")
def reference_statistic_run(small_demo_dir, reference_config, tmp_path_factory):
    """One epoch with the public code's statistic and a few pairs excluded; counts the
    embedding passes made between consecutive steps."""
    table = load_dataset(small_demo_dir)
    train_ids = table.ids[table.split_indices("train")]
    excluded = (*train_ids[:5], table.ids[table.split_indices("val")][0], "no-such-pair")
    config = reference_config(epochs=1, statistic="reference", exclude=excluded, n_bootstrap=0)
    calls, per_step = [0], []
    original = HeadEncoder.embed

    def counting(self, inputs):
        calls[0] += 1
        return original(self, inputs)

    def on_step(step, total, record):
        per_step.append(calls[0])
        calls[0] = 0

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HeadEncoder, "embed", counting)
        run_dir = tmp_path_factory.mktemp("reference") / "run"
        train(config, run_dir, on_step=on_step)
    return config, RunDir(run_dir), per_step, excluded


def test_reference_statistic_costs_one_extra_forward_pass_per_group(reference_statistic_run):
    _, run, per_step, _ = reference_statistic_run
    groups = 3  # Asian, Black, White
    assert len(per_step) > 2
    assert per_step[1:] == [1 + groups] * (len(per_step) - 1)  # step 1 also counts the baseline
    assert all(r["forward_passes"] == 1 + groups for r in run.read_metrics()
               if r["kind"] == "step")


def test_excluded_pairs_are_left_out(reference_statistic_run):
    config, run, _, excluded = reference_statistic_run
    memory = LossMemory.load(run.memory_path)
    assert not set(excluded) & set(memory.ids)
    table = load_dataset(config.data)
    assert len(memory) == len(table.split_indices("train")) - 5
    evaluation = json.loads(run.eval_path.read_text())
    assert evaluation["excluded"] == {"train": 5, "evaluated": 1, "unknown": 1}
    assert evaluation["val"]["n"] == len(table.split_indices("val"))  # evaluation keeps all


def test_training_changes_only_the_trainable_scope(finished, tiny_checkpoint):
    _, run = finished
    before, after = load_file(tiny_checkpoint), load_file(run.latest_checkpoint())
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"logit_scale", "text_projection", "visual.attnpool.c_proj.weight",
                       "visual.attnpool.c_proj.bias"}


def test_selection_keeps_the_earliest_best_epoch_and_falls_back_to_auc():
    selection = Selection("es_auc")
    for epoch, es_auc in enumerate([0.70, 0.75, 0.75, 0.72]):
        selection.update(epoch, {"es_auc": es_auc, "auc": 0.9}, f"e{epoch}")
    assert (selection.epoch, selection.value, selection.checkpoint) == (1, 0.75, "e1")
    assert selection.note == ""
    undefined = Selection("es_auc")
    for epoch, auc in enumerate([0.80, 0.85, 0.83]):
        undefined.update(epoch, {"es_auc": None, "auc": auc}, f"e{epoch}")
    assert (undefined.epoch, undefined.value) == (1, 0.85)
    assert "compared by auc" in undefined.note
    assert Selection.from_dict(undefined.to_dict()) == undefined


def test_a_runs_checkpoint_scores_with_the_prompts_the_run_used(reference_config, tmp_path):
    """A fine-tune of a model whose prompts are not the FairVLMed defaults (the demo's) saves
    them in its checkpoints: the checkpoint loaded as a spec reproduces the run's test AUC."""
    from model_files import with_prompts

    from fairvlm.models.prompts import DEMO_PROMPTS

    base = with_prompts(reference_config().model, tmp_path / "base.safetensors", DEMO_PROMPTS)
    config = replace(reference_config(epochs=1), model=str(base))
    assert train(config, tmp_path / "run").state == "done"
    run = RunDir(tmp_path / "run")
    evaluation = json.loads(run.eval_path.read_text())
    loaded = load_model(str(run.path / evaluation["checkpoint"]), device="cpu")
    assert loaded.default_prompts == DEMO_PROMPTS
    assert evaluation["prompts"] == {str(label): texts for label, texts in DEMO_PROMPTS.items()}
    table = load_dataset(config.data).subset("test")
    image = compute_embeddings(loaded, table, cache=False).image
    auc = roc_auc_score(table.labels, zero_shot_probabilities(loaded, image,
                                                              loaded.default_prompts))
    assert evaluation["test"]["auc"]["value"] == pytest.approx(auc, abs=1e-9)


def test_a_starting_model_moved_away_during_the_run_leaves_no_change(reference_config,
                                                                     tmp_path):
    """The starting weights are reloaded at the end for the test change; when the model file
    is gone by then, the run still finishes, says so in its log and has no change."""
    base = tmp_path / "base.safetensors"
    shutil.copyfile(reference_config().model, base)
    config = replace(reference_config(epochs=1), model=str(base))

    def move_away(step: int, total: int, record: dict) -> None:
        if base.exists():
            base.rename(tmp_path / "moved.safetensors")

    assert train(config, tmp_path / "run", on_step=move_away).state == "done"
    run = RunDir(tmp_path / "run")
    evaluation = json.loads(run.eval_path.read_text())
    assert evaluation["change_from_start"] is None and evaluation["start_test"] is None
    assert evaluation["test"]["auc"]["value"] is not None
    assert f"starting model not reloaded ({base}: " in run.log_path.read_text()
