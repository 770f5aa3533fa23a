"""Bad-pair detectors against hand computations, scipy ranks and the model run directly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import expit
from scipy.stats import rankdata

from fairvlm.data import load_dataset
from fairvlm.errors import ConfigError, DataError
from fairvlm.mining import DBPMConfig, LossMemory
from fairvlm.models import load_model
from fairvlm.pair_issues import (
    IssueSettings,
    disagreement_scores,
    explain,
    find_pair_issues,
    score_pairs,
    top_fraction,
)
from fairvlm.scoring import compute_embeddings, pair_scores


def _scores(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": [f"p{i}" for i in range(n)],
        "split": np.where(np.arange(n) < 30, "train", "test"),
        "label": rng.integers(0, 2, n),
        "similarity": rng.uniform(-0.2, 0.9, n),
        "loss": rng.uniform(0.5, 5.0, n),
        "rank": rng.integers(1, 10, n),
        "margin": rng.normal(0, 0.1, n),
        "image_probability": rng.uniform(0, 1, n),
        "note_probability": rng.uniform(0, 1, n),
    })


def _percentile(values: np.ndarray) -> np.ndarray:
    """scipy's average rank over the count: the pct() of the module docstring."""
    return rankdata(values, method="average") / len(values)


def test_mismatch_score_is_the_mean_percentile_of_loss_similarity_and_rank() -> None:
    scores = _scores()
    issues = find_pair_issues(scores)
    for split in ("train", "test"):
        rows = scores["split"].to_numpy() == split
        part = scores[rows]
        expected = (_percentile(part["loss"]) + _percentile(-part["similarity"])
                    + _percentile(part["rank"])) / 3
        np.testing.assert_allclose(issues.loc[rows, "mismatch_score"], expected)
    assert issues["id"].tolist() == scores["id"].tolist()


def test_quantile_flags_take_the_top_of_each_split_with_ties() -> None:
    values = np.array([5.0, 4.0, 4.0, 1.0, 0.0, 9.0, 8.0, np.nan])
    splits = np.array(["a", "a", "a", "a", "a", "b", "b", "b"])
    # Split a: ceil(0.3 * 5) = 2 -> 5.0 and both 4.0s (tied with the second); split b holds two
    # values (NaN does not count): ceil(0.3 * 2) = 1 -> 9.0.
    flags = top_fraction(values, splits, 0.3)
    assert flags.tolist() == [True, True, True, False, False, True, False, False]
    scores = _scores()
    issues = find_pair_issues(scores, settings=IssueSettings(flag_fraction=0.1))
    train = issues[scores["split"] == "train"]
    assert train["is_mismatch_issue"].sum() == 3  # ceil(0.1 * 30), no ties in uniform floats
    top = train.nlargest(3, "mismatch_score")
    assert top["is_mismatch_issue"].all()


def test_label_disagreement_score_and_confident_flag() -> None:
    assert disagreement_scores([0.9], [0.1])[0] == pytest.approx(0.9 * 0.9 + 0.1 * 0.1)
    assert disagreement_scores([0.5], [0.97])[0] == pytest.approx(0.5)
    scores = _scores().head(4).assign(split="test",
                                       image_probability=[0.95, 0.85, 0.6, 0.9],
                                       note_probability=[0.02, 0.2, 0.1, 0.95])
    issues = find_pair_issues(scores, settings=IssueSettings(confidence=0.8))
    # Threshold 0.8^2 + 0.2^2 = 0.68: 0.95*0.98 + 0.05*0.02 = 0.932 (flag), 0.85*0.8 + 0.15*0.2
    # = 0.71 (flag), 0.6*0.9 + 0.4*0.1 = 0.58 (no), 0.9*0.05 + 0.1*0.95 = 0.14 (no).
    np.testing.assert_allclose(issues["label_disagreement_score"], [0.932, 0.71, 0.58, 0.14])
    assert issues["is_label_disagreement_issue"].tolist() == [True, True, False, False]


def _memory(ids: list[str]) -> LossMemory:
    """Two epochs of history for the first 20 ids; p5 has an abnormally high loss."""
    memory = LossMemory([*ids[:20], "elsewhere"], epochs=2,
                        config=DBPMConfig(beta_fp=2.0, warmup=1))
    losses = np.linspace(1.0, 2.0, 20)
    losses[5] = 9.0
    for epoch in range(2):
        memory.record(ids[:20], torch.tensor(losses), epoch)
    return memory


def test_bad_pair_score_rank_averages_dbpm_z_rank_and_disagreement() -> None:
    scores = _scores()
    ids = scores["id"].tolist()
    issues = find_pair_issues(scores, memory=_memory(ids))
    held = np.arange(40) < 20
    # Every epoch has the same losses, so m_i is the loss itself; z uses the population std.
    losses = np.linspace(1.0, 2.0, 20)
    losses[5] = 9.0
    z = (losses - losses.mean()) / losses.std()
    np.testing.assert_allclose(issues.loc[held, "faulty_score"], z)
    assert issues.loc[~held, "faulty_score"].isna().all()
    assert issues["is_faulty_issue"].tolist() == [i == 5 for i in range(40)]
    assert issues.loc[5, "faulty_first_epoch"] == 2  # judged after the last epoch
    disagreement = issues["label_disagreement_score"].to_numpy()
    train = scores["split"].to_numpy() == "train"
    # Train pairs 0-19 have all three pieces of evidence, 20-29 only rank and disagreement.
    z_rank = np.full(40, np.nan)
    z_rank[:20] = _percentile(z)
    expected = np.empty(40)
    for rows in (train, ~train):
        rank_pct = _percentile(scores.loc[rows, "rank"])
        dis_pct = _percentile(disagreement[rows])
        stacked = np.vstack([z_rank[rows], rank_pct, dis_pct])
        expected[rows] = np.nanmean(stacked, axis=0)
    np.testing.assert_allclose(issues["bad_pair_score"], expected)
    assert issues["is_bad_pair_issue"].sum() == 3  # ceil(0.05 * 30) + ceil(0.05 * 10)
    reasons = " ".join(explain({**scores.iloc[5].to_dict(), **issues.iloc[5].to_dict()}))
    assert "DBPM faulty" in reasons and f"{z[5]:.2f} standard deviations above" in reasons


def test_the_mismatch_reason_says_when_the_rank_is_estimated() -> None:
    scores = _scores().assign(negatives=29, sampled=False)
    scores.loc[30:, ["negatives", "sampled"]] = (2000, True)
    scores.loc[30:, "rank"] *= 1000
    issues = find_pair_issues(scores)
    rows = {split: int(np.flatnonzero(issues["is_mismatch_issue"]
                                      & (scores["split"] == split))[0])
            for split in ("train", "test")}
    reasons = {split: explain({**scores.iloc[row].to_dict(), **issues.iloc[row].to_dict()})[0]
               for split, row in rows.items()}
    train, test = scores.iloc[rows["train"]], scores.iloc[rows["test"]]
    assert reasons["train"].endswith(f"true-note rank ({train['rank']}).")
    assert reasons["test"].endswith(
        f"true-note rank ({test['rank']:,}, estimated from 2,000 sampled notes).")


def test_a_memory_of_other_data_and_bad_settings_are_user_errors() -> None:
    scores = _scores()
    other = LossMemory(["x", "y"], epochs=2)
    with pytest.raises(DataError, match="holds none of the 40 pair ids"):
        find_pair_issues(scores, memory=other)
    with pytest.raises(DataError, match="missing column"):
        find_pair_issues(scores.drop(columns="note_probability"))
    with pytest.raises(ConfigError, match="flag_fraction"):
        IssueSettings(flag_fraction=1.5)
    with pytest.raises(ConfigError, match="confidence"):
        IssueSettings(confidence=0.3)


def test_score_pairs_matches_the_model_run_directly(small_demo_dir, tiny_checkpoint) -> None:
    table = load_dataset(small_demo_dir)
    loaded = load_model(str(tiny_checkpoint), device="cpu")
    prompts = {1: ["cup to disc 0.8, glaucoma"], 0: ["cup to disc 0.3, healthy"]}
    scores = score_pairs(loaded, table, prompts=prompts)
    assert scores["id"].tolist() == table.ids.astype(str).tolist()
    embeddings = compute_embeddings(loaded, table)
    test_rows = table.split_indices("test")
    expected = pair_scores(embeddings, table, split="test")
    np.testing.assert_allclose(scores.loc[test_rows, "loss"], expected["loss"])
    assert (scores.loc[test_rows, "rank"].to_numpy() == expected["rank"].to_numpy()).all()
    assert not scores["sampled"].any()
    # Splits above max_negatives + 1 pairs are scored against a sample, the others exactly.
    capped = score_pairs(loaded, table, prompts=prompts, max_negatives=5)
    for split in ("train", "val", "test"):
        rows = table.split_indices(split)
        expected = pair_scores(embeddings, table, split=split, max_negatives=5)
        assert capped.loc[rows, "sampled"].tolist() == [len(rows) > 6] * len(rows)
        for column in ("loss", "rank", "negatives"):
            np.testing.assert_array_equal(capped.loc[rows, column], expected[column])
    # Zero-shot p(glaucoma) of three notes, from the towers themselves.
    rows = test_rows[:3]
    with torch.inference_mode():
        classes = loaded.model.encode_text(loaded.tokenizer([prompts[0][0], prompts[1][0]]),
                                           normalize=True).numpy()
        notes = loaded.model.encode_text(loaded.tokenizer(table.frame["text"].iloc[rows]
                                                          .tolist()), normalize=True).numpy()
    expected_note = expit(loaded.logit_scale * notes @ (classes[1] - classes[0]))
    np.testing.assert_allclose(scores.loc[rows, "note_probability"], expected_note, rtol=1e-4)
