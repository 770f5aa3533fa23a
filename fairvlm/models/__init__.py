"""Models: load any CLIP-style checkpoint from a spec string, safely, with its preprocessing.

>>> from fairvlm.models import load_model
>>> loaded = load_model("demo")            # or "ViT-B-16:openai", "hf-hub:ORG/NAME", a file
>>> loaded.model, loaded.preprocess, loaded.tokenizer, loaded.fingerprint

See :mod:`fairvlm.models.specs` for the accepted spec strings, :mod:`fairvlm.models.keymap` for
the checkpoint layouts understood, and :mod:`fairvlm.models.demo_model` for the demo model.
"""

from fairvlm.models.checkpoints import read_checkpoint, save_checkpoint
from fairvlm.models.demo_model import DemoTraining, demo_model_path, ensure_demo_model
from fairvlm.models.loading import LoadedModel, load_model, resolve_device, weights_fingerprint
from fairvlm.models.prompts import DEMO_PROMPTS, FAIRVLMED_PROMPTS
from fairvlm.models.specs import ACCEPTED_FORMS, ModelSpec, parse_spec

__all__ = [
    "ACCEPTED_FORMS",
    "DEMO_PROMPTS",
    "FAIRVLMED_PROMPTS",
    "DemoTraining",
    "LoadedModel",
    "ModelSpec",
    "demo_model_path",
    "ensure_demo_model",
    "load_model",
    "parse_spec",
    "read_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "weights_fingerprint",
]
