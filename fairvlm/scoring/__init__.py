"""Scoring one checkpoint on one table: embeddings, zero-shot, linear probe, per-pair scores.

>>> from fairvlm.scoring import compute_embeddings, zero_shot_probabilities, pair_scores
>>> emb = compute_embeddings(loaded, table)                 # cached on disk by content
>>> p = zero_shot_probabilities(loaded, emb.image, loaded.default_prompts)
>>> scores = pair_scores(emb, table, split="test")          # similarity, loss, rank, margin

Everything returns numpy arrays or pandas frames; torch is used only to run the model.
"""

from fairvlm.scoring.embeddings import (
    Embeddings,
    compute_embeddings,
    embedding_cache_key,
    embedding_cache_path,
)
from fairvlm.scoring.pairs import SCORE_COLUMNS, pair_scores
from fairvlm.scoring.probe import C_GRID, linear_probe
from fairvlm.scoring.zero_shot import (
    CLASS_NAMES,
    check_prompts,
    class_text_embeddings,
    zero_shot_probabilities,
)

__all__ = [
    "CLASS_NAMES",
    "C_GRID",
    "SCORE_COLUMNS",
    "Embeddings",
    "check_prompts",
    "class_text_embeddings",
    "compute_embeddings",
    "embedding_cache_key",
    "embedding_cache_path",
    "linear_probe",
    "pair_scores",
    "zero_shot_probabilities",
]
