"""Run configurations: frozen dataclasses, checked on construction, saved as JSON with each run.

Every config class derives from :class:`JsonConfig`, which gives it ``to_dict``/``to_json``,
``from_dict``/``from_json`` (unknown fields refused, naming the expected ones) and a content
``fingerprint``. A field check that fails raises :class:`~fairvlm.errors.ConfigError` with one
line naming the config, the field, the value and what was expected.

:class:`AuditConfig` holds everything that decides the numbers of an audit
(:func:`fairvlm.audit.run_audit`) besides the data and the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from fairvlm.data.table import SPLITS
from fairvlm.errors import ConfigError
from fairvlm.metrics import DEFAULT_MIN_N
from fairvlm.metrics._groups import UNKNOWN_POLICIES
from fairvlm.metrics._thresholds import (  # noqa: F401 (threshold labels: re-exported)
    THRESHOLD_LABELS,
    THRESHOLD_METHODS,
    threshold_label,
)

SCORERS: tuple[str, ...] = ("zero-shot", "linear-probe")
FIXED_THRESHOLD = 0.5
INTERSECTION_SEPARATOR = "&"


def attribute_label(name: str) -> str:
    """An attribute or intersection for titles and headings: ``race&gender`` reads
    ``race & gender``."""
    return f" {INTERSECTION_SEPARATOR} ".join(name.split(INTERSECTION_SEPARATOR))


class JsonConfig:
    """JSON round trip and fingerprint for a frozen config dataclass.

    Subclasses are ``@dataclass(frozen=True)`` classes whose fields hold JSON-able values
    (tuples are written as lists; mapping keys as strings) and set :attr:`KIND`, the name used
    in error messages. ``__post_init__`` normalises values read back from JSON (lists to
    tuples, string keys to ints) and checks every field.
    """

    KIND: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON-able data."""
        return json.loads(self.to_json())

    def to_json(self, *, indent: int | None = 2) -> str:
        """Canonical JSON (sorted keys) of the fields."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return json.dumps(fields, indent=indent, sort_keys=True, default=_jsonable)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> Self:
        """Build from :meth:`to_dict` output; missing fields take their defaults.

        Raises
        ------
        ConfigError
            For a field this config does not have, or a value its checks refuse; the message
            starts with ``source`` when given (a file name).
        """
        where = f"{source}: " if source else ""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}{cls.KIND}: expected a JSON object of fields, got "
                              f"{type(data).__name__}")
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{where}{cls.KIND}: unknown field(s) {', '.join(unknown)}; "
                              f"expected some of {', '.join(names)}")
        try:
            return cls(**data)
        except ConfigError as error:
            raise ConfigError(f"{where}{error}") from None

    @classmethod
    def from_json(cls, text: str, *, source: str | None = None) -> Self:
        """Parse :meth:`to_json` output (see :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            where = f"{source}: " if source else ""
            raise ConfigError(f"{where}{cls.KIND}: not valid JSON ({error.msg} at line "
                              f"{error.lineno}, column {error.colno})") from None
        return cls.from_dict(data, source=source)

    def fingerprint(self) -> str:
        """Hash of the canonical JSON (16 hex characters): equal configs, equal fingerprints."""
        text = self.to_json(indent=None)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    def _fail(self, field: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(f"{self.KIND} field {field}: {value!r}; expected {expected}")

    def _check_choice(self, field: str, choices: Sequence[str]) -> None:
        value = getattr(self, field)
        if value not in choices:
            raise self._fail(field, value, f"one of {', '.join(choices)}")

    def _check_int(self, field: str, minimum: int) -> None:
        value = getattr(self, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._fail(field, value, f"an integer >= {minimum}")

    def _check_bool(self, field: str) -> None:
        value = getattr(self, field)
        if not isinstance(value, bool):
            raise self._fail(field, value, "true or false")

    def _check_positive(self, field: str) -> None:
        value = getattr(self, field)
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or value <= 0):
            raise self._fail(field, value, "a finite number > 0")

    def _normalise(self, field: str, value: Any) -> None:
        object.__setattr__(self, field, value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def parse_attribute(spec: str) -> tuple[str, ...]:
    """The attribute names of ``spec``: ``"race"`` -> ``("race",)``,
    ``"race&gender"`` -> ``("race", "gender")`` (an intersection).

    Raises
    ------
    ConfigError
        An empty name or a name repeated within the intersection.
    """
    parts = tuple(part.strip() for part in str(spec).split(INTERSECTION_SEPARATOR))
    if not all(parts):
        raise ConfigError(f"attribute {spec!r}: empty name; expected a column name such as "
                          f"race, or an intersection such as race{INTERSECTION_SEPARATOR}gender")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"attribute {spec!r}: a name repeats; expected distinct attributes "
                          "in an intersection")
    return parts


@dataclass(frozen=True)
class AuditConfig(JsonConfig):
    """Settings of an audit (METHOD.md, section 5).

    Parameters
    ----------
    attributes
        Attributes to audit; ``"race&gender"`` audits the intersection of two. Empty: every
        attribute of the data, one at a time.
    split
        The split whose pairs are audited (``"test"``; thresholds are always chosen on
        ``"val"``).
    scorer
        ``"zero-shot"`` (class prompts) or ``"linear-probe"`` (logistic regression on frozen
        image embeddings, fit on the training split).
    prompts
        Zero-shot class prompts, class (0 = no glaucoma, 1 = glaucoma) -> list of prompts;
        ``None``: the model's default prompts.
    use_logit_scale
        Zero-shot softmax over ``s * cosine`` (True) or over raw cosines (False, FairCLIP
        parity).
    threshold
        ``"fixed"`` (0.5), or chosen on the validation split: ``"youden"`` (max TPR - FPR) or
        ``"f1"``.
    min_n
        Groups with fewer pairs are hidden from the summary, with a visible note.
    unknown
        Unknown attribute codes form their own group (``"group"``) or are left out
        (``"exclude"``).
    n_bootstrap
        Percentile bootstrap resamples for the confidence intervals (0: none).
    n_permutations
        Group-label shuffles of the permutation null of the distribution distances (0: none).
    blur
        Sinkhorn blur of the loss and similarity distribution distances, as a fraction of the
        population's standard deviation of each statistic (``eps = (blur * sd)^2``), so one
        setting suits both scales.
    sinkhorn_max_pairs
        The Sinkhorn divergences are solved exactly when the audited population has at most
        this many pairs (a Newton step costs ``O(n_g^2 N)``: at most 0.5 s per statistic at
        1,000 pairs and blur 0.1 on the benchmark's data sets, up to 2.8 s at 2,000); above it,
        on summaries of about 256 weighted atoms of each distribution
        (:mod:`fairvlm.ot._summaries`, 0.1-0.3 s per statistic at any size, within 1e-5 times
        the statistic's variance of the exact solve as measured), with a note. 0: always on
        summaries.
    seed
        Seed of the bootstrap, the permutations and the linear probe.
    """

    KIND: ClassVar[str] = "audit config"

    attributes: tuple[str, ...] = ()
    split: str = "test"
    scorer: str = "zero-shot"
    prompts: Mapping[int, tuple[str, ...]] | None = None
    use_logit_scale: bool = True
    threshold: str = "youden"
    min_n: int = DEFAULT_MIN_N
    unknown: str = "group"
    n_bootstrap: int = 1000
    n_permutations: int = 200
    blur: float = 0.1
    sinkhorn_max_pairs: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        self._normalise("attributes", self._checked_attributes())
        if self.prompts is not None:
            self._normalise("prompts", self._normalised_prompts())
        self._check_choice("split", SPLITS)
        self._check_choice("scorer", SCORERS)
        self._check_bool("use_logit_scale")
        self._check_choice("threshold", THRESHOLD_METHODS)
        self._check_int("min_n", 1)
        self._check_choice("unknown", UNKNOWN_POLICIES)
        self._check_int("n_bootstrap", 0)
        self._check_int("n_permutations", 0)
        self._check_positive("blur")
        self._check_int("sinkhorn_max_pairs", 0)
        self._check_int("seed", 0)

    def attribute_parts(self) -> list[tuple[str, ...]]:
        """:func:`parse_attribute` of every entry of ``attributes``."""
        return [parse_attribute(spec) for spec in self.attributes]

    def _checked_attributes(self) -> tuple[str, ...]:
        given = self.attributes
        if isinstance(given, str) or not isinstance(given, Sequence):
            raise self._fail("attributes", given, "a list of attribute names")
        specs = []
        for spec in given:
            if not isinstance(spec, str):
                raise self._fail("attributes", spec, "attribute names as text")
            try:
                specs.append(INTERSECTION_SEPARATOR.join(parse_attribute(spec)))
            except ConfigError as error:
                raise ConfigError(f"{self.KIND} field attributes: {error}") from None
        repeated = sorted({spec for spec in specs if specs.count(spec) > 1})
        if repeated:
            raise self._fail("attributes", repeated[0], "each attribute listed once")
        return tuple(specs)

    def _normalised_prompts(self) -> dict[int, tuple[str, ...]]:
        """Class keys as ints (JSON keys are strings) and prompt lists as tuples. Which classes
        and prompts are acceptable (both classes, no empty prompt) is checked by
        :func:`fairvlm.scoring.check_prompts` when the audit starts."""
        if not isinstance(self.prompts, Mapping):
            raise self._fail("prompts", self.prompts, "an object mapping class 0 and 1 to "
                             "lists of prompts")
        normalised: dict[int, tuple[str, ...]] = {}
        for key, texts in self.prompts.items():
            if not str(key).strip().lstrip("-").isdigit():
                raise self._fail("prompts", key, "class keys 0 (no glaucoma) and 1 (glaucoma)")
            items = [texts] if isinstance(texts, str) else texts
            if not isinstance(items, Sequence) or not all(isinstance(t, str) for t in items):
                raise self._fail(f"prompts[{key}]", texts, "a list of prompt strings")
            normalised[int(key)] = tuple(items)
        return normalised
