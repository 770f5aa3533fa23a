"""Default zero-shot class prompts (class 1 = glaucoma, class 0 = no glaucoma).

A model's default prompts only seed the user-editable prompt boxes; every zero-shot result
records the prompts it used.
"""

from __future__ import annotations

FAIRVLMED_PROMPTS: dict[int, list[str]] = {
    1: ["A photo of glaucoma"],
    0: ["A photo of non-glaucoma"],
}
"""FairCLIP's prompts for Harvard-FairVLMed (METHOD.md, section 5)."""

DEMO_PROMPTS: dict[int, list[str]] = {
    1: [
        "Disc: C/D 0.80, thin inferior rim. Impression: primary open-angle glaucoma.",
        "Optic nerve with cup-to-disc ratio 0.8; superior notching. Dx: glaucoma.",
        "Fundus exam: CDR 0.75 OD, diffuse rim thinning. Assessment: POAG.",
        "vertical c:d 0.85, rim pallor. Visual field shows superior arcuate defect.",
    ],
    0: [
        "Disc: C/D 0.30, healthy rim. Impression: no glaucoma.",
        "Optic nerve with cup-to-disc ratio 0.3; rim intact. No glaucoma medications.",
        "Fundus exam: CDR 0.25 OD, pink and sharp rim. Healthy optic nerves.",
        "vertical c:d 0.35, no notching. Visual fields within normal limits.",
    ],
}
"""The demo model's prompts: four note-style phrasings per class, written like the demo notes
(fairvlm/data/demo_notes.py). Bare "glaucoma" / "no glaucoma" prompts swing the demo's zero-shot
AUC between 0.57 and 0.87 across training seeds; note-style ensembles are stable."""
