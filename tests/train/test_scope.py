"""Trainable scopes: which parameters train, and the projections path equals the full forward."""

from __future__ import annotations

import pytest
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, CustomTextCLIP

from fairvlm.errors import ConfigError
from fairvlm.models.architectures import DEMO_ARCH, build_model
from fairvlm.train.scope import ProjectionHeads, parameter_groups, select_trainable

TEXT = CLIPTextCfg(context_length=8, vocab_size=64, width=32, heads=2, layers=3)
VIT = CLIPVisionCfg(layers=3, width=32, head_width=16, patch_size=8, image_size=32)


def _seeded(build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build().eval()


@pytest.fixture(scope="module")
def resnet_clip() -> torch.nn.Module:
    return _seeded(lambda: build_model(DEMO_ARCH))


@pytest.fixture(scope="module")
def vit_clip() -> torch.nn.Module:
    return _seeded(lambda: CLIP(embed_dim=16, vision_cfg=VIT, text_cfg=TEXT))


@pytest.fixture(scope="module")
def vit_custom_text_clip() -> torch.nn.Module:
    return _seeded(lambda: CustomTextCLIP(embed_dim=16, vision_cfg=VIT, text_cfg=TEXT))


def _inputs(model: torch.nn.Module, batch: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    images = torch.randn(batch, 3, size, size, generator=generator)
    tokens = torch.randint(1, 60, (batch, model.context_length), generator=generator)
    return images, tokens


@pytest.mark.parametrize("name", ["resnet_clip", "vit_clip", "vit_custom_text_clip"])
def test_projection_heads_reproduce_the_full_forward(name, request):
    model = request.getfixturevalue(name)
    images, tokens = _inputs(model)
    heads = ProjectionHeads(model)
    image_features, text_features = heads.features(images, tokens)
    with torch.no_grad():
        torch.testing.assert_close(heads.image_embedding(image_features),
                                   model.encode_image(images), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(heads.text_embedding(text_features),
                                   model.encode_text(tokens), rtol=1e-5, atol=1e-5)


def test_projections_are_restored_after_the_towers_run(resnet_clip, vit_clip):
    for model in (resnet_clip, vit_clip):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        ProjectionHeads(model).features(*_inputs(model))
        after = model.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)


def test_projections_scope_trains_projections_and_scale_only(resnet_clip, vit_clip,
                                                             vit_custom_text_clip):
    assert sorted(select_trainable(resnet_clip, "projections")) == [
        "logit_scale", "text_projection", "visual.attnpool.c_proj.bias",
        "visual.attnpool.c_proj.weight"]
    assert sorted(select_trainable(vit_clip, "projections")) == [
        "logit_scale", "text_projection", "visual.proj"]
    assert sorted(select_trainable(vit_custom_text_clip, "projections")) == [
        "logit_scale", "text.text_projection", "visual.proj"]
    frozen = [n for n, p in vit_clip.named_parameters() if not p.requires_grad]
    assert "visual.transformer.resblocks.2.mlp.c_fc.weight" in frozen


def test_last_k_scope_trains_the_last_blocks_and_what_follows(vit_clip, resnet_clip):
    names = set(select_trainable(vit_clip, "last-k", last_k=2))
    blocks = {n.split(".")[3] for n in names if n.startswith("visual.transformer.resblocks.")}
    text_blocks = {n.split(".")[2] for n in names if n.startswith("transformer.resblocks.")}
    assert blocks == {"1", "2"} and text_blocks == {"1", "2"}
    assert {"visual.ln_post.weight", "visual.proj", "ln_final.weight", "text_projection",
            "logit_scale"} <= names
    assert "token_embedding.weight" not in names and "visual.conv1.weight" not in names
    resnet_names = set(select_trainable(resnet_clip, "last-k", last_k=1))
    assert any(n.startswith("visual.layer4.0.") for n in resnet_names)
    assert not any(n.startswith("visual.layer3.") for n in resnet_names)
    assert "visual.attnpool.q_proj.weight" in resnet_names


def test_full_scope_trains_everything(vit_clip):
    names = select_trainable(vit_clip, "full")
    assert len(names) == len(list(vit_clip.parameters()))


def test_last_k_beyond_the_tower_is_a_one_line_config_error(vit_clip):
    with pytest.raises(ConfigError, match="last_k 4: the image tower has 3 blocks") as caught:
        select_trainable(vit_clip, "last-k", last_k=4)
    assert "\n" not in str(caught.value)


def test_weight_decay_skips_gains_biases_and_logit_scale(vit_clip):
    select_trainable(vit_clip, "last-k", last_k=1)
    decay, no_decay = parameter_groups(vit_clip, 0.1)
    names = {id(p): n for n, p in vit_clip.named_parameters()}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    assert "logit_scale" in {names[id(p)] for p in no_decay["params"]}
    trainable = {n for n, p in vit_clip.named_parameters() if p.requires_grad}
    assert {names[id(p)] for p in decay["params"] + no_decay["params"]} == trainable
