"""What a fine-tune trains: the whole model, the last k blocks of each tower, or the projections.

Scopes (parameter names are open_clip's):

``full``
    every parameter.
``last-k``
    the last k residual blocks of each tower (ViT and text transformer blocks; the
    bottlenecks of a ModifiedResNet, counted across its stages), what follows them (the
    final norms, the attention pool of a ModifiedResNet), the two projections and the logit
    scale.
``projections``
    the image projection (``visual.proj`` of a ViT, ``visual.attnpool.c_proj`` of a
    ModifiedResNet), the text projection and the logit scale. The towers below them are
    frozen, so their outputs are computed once (:class:`ProjectionHeads`) and a step is two
    small matrix products: this is what makes CPU fine-tunes practical.

Supported towers: open_clip's ``VisionTransformer`` and ``ModifiedResNet`` image towers and
its transformer text towers (``CLIP`` and ``CustomTextCLIP`` models). Other towers (timm,
Hugging Face) can only be trained with ``full``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import TextTransformer, VisionTransformer
from torch import Tensor, nn

from fairvlm.errors import ConfigError

SCOPES: tuple[str, ...] = ("full", "last-k", "projections")
_SCALE_NAMES: tuple[str, ...] = ("logit_scale", "logit_bias")


def select_trainable(model: nn.Module, scope: str, *, last_k: int = 1) -> list[str]:
    """Set ``requires_grad`` for ``scope`` (see the module docstring); return trainable names.

    Raises
    ------
    ConfigError
        An unknown scope, a tower this scope does not support, or ``last_k`` larger than a
        tower's number of blocks.
    """
    prefixes = trainable_prefixes(model, scope, last_k=last_k)
    names = []
    for name, parameter in model.named_parameters():
        trainable = prefixes is None or any(_under(name, prefix) for prefix in prefixes)
        parameter.requires_grad_(trainable)
        if trainable:
            names.append(name)
    return names


def trainable_prefixes(model: nn.Module, scope: str, *, last_k: int = 1
                       ) -> tuple[str, ...] | None:
    """Dotted module/parameter names whose parameters ``scope`` trains (None: all of them)."""
    if scope == "full":
        return None
    if scope not in SCOPES:
        raise ConfigError(f"scope {scope!r}: expected one of {', '.join(SCOPES)}")
    text_root, text = _text_tower(model, scope)
    visual = _image_tower(model, scope)
    scales = tuple(name for name in _SCALE_NAMES if getattr(model, name, None) is not None)
    if scope == "projections":
        image_head = ("visual.attnpool.c_proj" if isinstance(visual, ModifiedResNet)
                      else "visual.proj")
        return (image_head, f"{text_root}text_projection", *scales)
    if isinstance(visual, ModifiedResNet):
        blocks = [f"visual.layer{stage}.{i}" for stage in range(1, 5)
                  for i in range(len(getattr(visual, f"layer{stage}")))]
        image_tail = ["visual.attnpool"]
    else:
        blocks = [f"visual.transformer.resblocks.{i}"
                  for i in range(len(visual.transformer.resblocks))]
        image_tail = [f"visual.{name}" for name in ("ln_post", "proj", "attn_pool",
                                                    "attn_pool_contrastive", "ln_pool")
                      if getattr(visual, name, None) is not None]
    text_blocks = [f"{text_root}transformer.resblocks.{i}"
                   for i in range(len(text.transformer.resblocks))]
    for tower, listed in (("image", blocks), ("text", text_blocks)):
        if last_k > len(listed):
            raise ConfigError(f"last_k {last_k}: the {tower} tower has {len(listed)} "
                              f"blocks; expected 1..{len(listed)}")
    return (*blocks[-last_k:], *image_tail, *text_blocks[-last_k:],
            f"{text_root}ln_final", f"{text_root}text_projection", *scales)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups of the trainable parameters: decay on matrices and kernels only.

    Gains, biases (1-D) and the logit scale get no weight decay.
    """
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            exempt = parameter.ndim < 2 or name in _SCALE_NAMES
            (no_decay if exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class ProjectionHeads:
    """The frozen towers' outputs and the trainable projections of a ``projections`` fine-tune.

    ``features`` runs each tower up to, not including, its projection (once per pair, up
    front); ``image_embedding`` and ``text_embedding`` apply the projections, so
    ``image_embedding(features(x, t)[0]) == model.encode_image(x)`` up to rounding.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.visual = _image_tower(model, "projections")
        self.text_root, self.text = _text_tower(model, "projections")

    @torch.no_grad()
    def features(self, images: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-projection image and text features of a batch (no gradients)."""
        with self._without_projections():
            return self.model.encode_image(images), self.model.encode_text(tokens)

    def image_embedding(self, features: Tensor) -> Tensor:
        """The image projection of pre-projection features (not normalised)."""
        if isinstance(self.visual, ModifiedResNet):
            return self.visual.attnpool.c_proj(features)
        return features @ self.visual.proj

    def text_embedding(self, features: Tensor) -> Tensor:
        """The text projection of pre-projection features (not normalised)."""
        projection = self.text.text_projection
        if isinstance(projection, nn.Linear):
            return projection(features)
        return features @ projection

    @contextmanager
    def _without_projections(self) -> Iterator[None]:
        """Swap each projection for the identity while the towers run, then restore it.

        A ModifiedResNet applies ``c_proj`` inside its attention pool, so it is replaced by
        an identity linear map; the other projections are optional and become None.
        """
        text_projection = self.text.text_projection
        if isinstance(self.visual, ModifiedResNet):
            pool = self.visual.attnpool
            image_projection, width = pool.c_proj, pool.c_proj.in_features
            weight = pool.c_proj.weight
            identity = torch.nn.utils.skip_init(nn.Linear, width, width, device=weight.device,
                                                dtype=weight.dtype)
            nn.init.eye_(identity.weight)
            nn.init.zeros_(identity.bias)
            pool.c_proj = identity
        else:
            image_projection = self.visual.proj
            self.visual.proj = None
        self.text.text_projection = None
        try:
            yield
        finally:
            if isinstance(self.visual, ModifiedResNet):
                self.visual.attnpool.c_proj = image_projection
            else:
                self.visual.proj = image_projection
            self.text.text_projection = text_projection


def _image_tower(model: nn.Module, scope: str) -> nn.Module:
    visual = getattr(model, "visual", None)
    if not isinstance(visual, ModifiedResNet | VisionTransformer):
        raise ConfigError(f"scope {scope}: the image tower is a {type(visual).__name__}; "
                          "expected an open_clip VisionTransformer or ModifiedResNet, or use "
                          "scope full")
    if isinstance(visual, VisionTransformer) and visual.proj is None:
        raise ConfigError(f"scope {scope}: the image tower has no projection; use scope full")
    return visual


def _text_tower(model: nn.Module, scope: str) -> tuple[str, nn.Module]:
    """(parameter-name prefix, module) of the text tower's transformer and projection."""
    text = getattr(model, "text", None)
    if isinstance(text, TextTransformer):
        root, tower = "text.", text
    elif isinstance(getattr(model, "transformer", None), nn.Module):
        root, tower = "", model
    else:
        raise ConfigError(f"scope {scope}: the text tower is a {type(text).__name__}; expected "
                          "an open_clip text transformer, or use scope full")
    if getattr(tower, "text_projection", None) is None:
        raise ConfigError(f"scope {scope}: the text tower has no projection; use scope full")
    return root, tower


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")
