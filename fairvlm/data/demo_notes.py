"""Clinical-style notes for the synthetic demo data set.

A full note has a visit line, then in varying order the intraocular pressure (IOP), the optic
disc with its cup-to-disc ratio (CDR) written in one of several formats and roundings, and the
visual field; then medications, an impression and a plan. Each part is drawn from several
phrasings; some impressions are deliberately equivocal ("glaucoma suspect" for a healthy eye),
as in real records. A terse note is a visit line and one short, mostly label-neutral phrase: no
CDR, no field, no diagnosis. Terse notes are the note-borne difficulty of the demo: they only
change the text, never the image.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

_OPENINGS = (
    "{age}-year-old {sex} seen for glaucoma evaluation.",
    "{Sex}, {age} y/o, follow-up visit.",
    "Pt is a {age} yo {sex} referred for optic nerve assessment.",
    "{age}yo {sex_short}, annual eye exam.",
    "Follow-up of a {age}-year-old {sex}.",
)
_IOP = (
    "IOP {iop} mmHg {eye}.",
    "Tapp {iop} {eye}.",
    "Pressures {iop}/{iop_other}.",
    "IOP measured at {iop} today.",
)
# (phrase with the CDR placeholder, decimals the value is written with)
_CDR_FORMATS = (
    ("C/D {value}", 2),
    ("cup-to-disc ratio {value}", 1),
    ("CDR {value} {eye}", 2),
    ("vertical c:d {value}", 2),
    ("cupping ~{value}", 2),
    ("c/d ratio of {value}", 1),
)
_DISC = (
    "Disc: {cdr}, {rim}.",
    "Optic nerve {eye} with {cdr}; {rim}.",
    "Fundus exam: {cdr}, {rim}.",
)
_RIM = {
    True: ("thin inferior rim", "superior notching", "diffuse rim thinning", "rim pallor"),
    False: ("healthy rim", "pink and sharp rim", "rim intact", "no notching"),
}
_FIELD = {
    True: (
        "HVF 24-2: {defect}, MD {md} dB.",
        "Visual field shows {defect} (MD {md}).",
        "VF: {defect}.",
    ),
    False: (
        "HVF full, MD {md} dB.",
        "Visual fields within normal limits.",
        "VF reliable and full.",
    ),
}
_DEFECTS = (
    "superior arcuate defect",
    "inferior nasal step",
    "paracentral scotoma",
    "early inferior arcuate loss",
)
_MEDICATIONS = {
    True: (
        "On latanoprost qhs {eye}.",
        "Using timolol 0.5% BID.",
        "Continues dorzolamide-timolol.",
        "Brimonidine added last visit.",
        "s/p SLT {eye}, no drops.",
    ),
    False: ("No glaucoma medications.", "Uses artificial tears PRN.", "No topical meds."),
}
_IMPRESSIONS = {
    True: (
        "Impression: primary open-angle glaucoma.",
        "Assessment: POAG {eye}, {stage} stage.",
        "Dx: glaucoma, continue current treatment.",
        "Normal-tension glaucoma, monitor closely.",
    ),
    False: (
        "Impression: no glaucoma.",
        "Healthy optic nerves; no glaucomatous damage.",
        "Glaucoma suspect by disc appearance, no functional loss.",
        "Ocular hypertension without glaucoma; observe.",
    ),
}
_STAGES = ("mild", "moderate", "severe")
_PLANS = ("Return in 6 months.", "RTC 1 year with HVF.", "Follow up in 3 months.", "")
_TERSE = {
    True: ("Stable, continue drops.", "f/u as scheduled.", "Seen today, no changes."),
    False: ("Routine f/u.", "Stable, RTC 1 yr.", "Seen today, no changes."),
}


@dataclass(frozen=True)
class NoteFacts:
    """What a note may state about one eye.

    Parameters
    ----------
    glaucoma
        The diagnosis the note describes.
    cdr
        The cup-to-disc ratio the clinician noted (already noisy; rounded when written).
    iop
        Intraocular pressure in mmHg.
    md
        Visual-field mean deviation in dB.
    age
        Age in years.
    female
        Sex of the patient.
    eye
        0 for the right eye (OD), 1 for the left (OS).
    """

    glaucoma: bool
    cdr: float
    iop: int
    md: float
    age: float
    female: bool
    eye: int


def write_note(facts: NoteFacts, rng: random.Random, *, terse: bool) -> tuple[str, float]:
    """Write one note about ``facts``.

    Returns
    -------
    tuple
        The note and the CDR as written in it (rounded to the format's decimals), or NaN when
        the note states no CDR (terse notes).
    """
    words = {
        "age": str(round(facts.age)),
        "sex": "woman" if facts.female else "man",
        "Sex": "Female" if facts.female else "Male",
        "sex_short": "F" if facts.female else "M",
        "eye": "OS" if facts.eye else "OD",
        "iop": str(facts.iop),
        "iop_other": str(max(6, facts.iop + rng.randint(-2, 2))),
        "md": f"{facts.md:.1f}",
        "defect": rng.choice(_DEFECTS),
        "stage": rng.choice(_STAGES),
    }
    opening = rng.choice(_OPENINGS).format(**words)
    if terse:
        return f"{opening} {rng.choice(_TERSE[facts.glaucoma])}", math.nan
    cdr_phrase, decimals = rng.choice(_CDR_FORMATS)
    written_cdr = round(facts.cdr, decimals)
    words["cdr"] = cdr_phrase.format(value=f"{written_cdr:.{decimals}f}", eye=words["eye"])
    words["rim"] = rng.choice(_RIM[facts.glaucoma])
    findings = [
        rng.choice(_IOP).format(**words),
        rng.choice(_DISC).format(**words),
        rng.choice(_FIELD[facts.glaucoma]).format(**words),
    ]
    rng.shuffle(findings)
    parts = [
        opening,
        *findings,
        rng.choice(_MEDICATIONS[facts.glaucoma]).format(**words),
        rng.choice(_IMPRESSIONS[facts.glaucoma]).format(**words),
        rng.choice(_PLANS),
    ]
    return " ".join(p for p in parts if p), written_cdr
