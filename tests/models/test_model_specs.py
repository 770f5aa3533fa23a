"""Spec strings: every accepted form parses; every bad one fails with one helpful line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fairvlm.errors import ModelError
from fairvlm.models import load_model, parse_spec, resolve_device


def test_accepted_forms(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not read by the parser")
    assert parse_spec("demo").kind == "demo"
    pretrained = parse_spec("ViT-B-16:openai")
    assert (pretrained.kind, pretrained.arch, pretrained.tag) == \
        ("pretrained", "ViT-B-16", "openai")
    hub = parse_spec("hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K")
    assert (hub.kind, hub.hub_id) == ("hf-hub", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K")
    local = parse_spec(str(checkpoint))
    assert (local.kind, local.path) == ("file", checkpoint)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_unknown_spec_lists_accepted_forms() -> None:
    with pytest.raises(ModelError) as error:
        parse_spec("my-favourite-model")
    message = _one_line(error)
    for form in ("demo", "ARCH:TAG", "hf-hub:ORG/NAME", ".safetensors", ".pt", ".pth", ".bin"):
        assert form in message


@pytest.mark.parametrize("spec, expected", [
    ("", "empty model spec"),
    ("./missing/model.safetensors", "file not found"),
    ("weights.pth", "file not found"),
    ("ViT-Q-99:openai", "unknown open_clip architecture 'ViT-Q-99'"),
    ("ViT-B-61:openai", "did you mean ViT-B-16"),
    ("ViT-B-16:no-such-tag", "available tags: openai"),
    ("ViT-B-16", "needs a pretrained tag"),
    ("hf-hub:just-a-name", "expected hf-hub:ORG/NAME"),
    ("hf-hub:", "expected hf-hub:ORG/NAME"),
])
def test_bad_specs(spec: str, expected: str) -> None:
    with pytest.raises(ModelError) as error:
        parse_spec(spec)
    assert expected in _one_line(error)


def test_folder_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is a folder"):
        load_model(str(tmp_path), device="cpu")


def test_unknown_arch_flag(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, checkpoint)
    with pytest.raises(ModelError, match="--arch 'ViT-Nope': not an open_clip architecture"):
        load_model(str(checkpoint), device="cpu", arch="ViT-Nope")


def test_device_resolution() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ModelError, match="expected cpu, cuda or cuda:N"):
        resolve_device("tpu")
    with pytest.raises(ModelError, match="expected cpu, cuda or cuda:N"):
        resolve_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda() -> None:
    with pytest.raises(ModelError, match="CUDA is not available"):
        resolve_device("cuda")
