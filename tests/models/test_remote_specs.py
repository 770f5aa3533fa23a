"""``ARCH:TAG`` and ``hf-hub:`` specs, with open_clip's downloads replaced by local files."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch

from fairvlm.errors import ModelError
from fairvlm.models import FAIRVLMED_PROMPTS, load_model, save_checkpoint
from fairvlm.models.architectures import DEMO_ARCH


class FakeHub:
    """Stands in for ``huggingface_hub.hf_hub_download``: serves local files, logs requests."""

    def __init__(self, files: dict[tuple[str, str], Path]) -> None:
        self.files = files
        self.requests: list[tuple[str, str]] = []

    def __call__(self, repo_id: str, filename: str, **kwargs) -> str:
        self.requests.append((repo_id, filename))
        if (repo_id, filename) not in self.files:
            raise FileNotFoundError(f"{repo_id}/{filename} is not on the fake hub")
        return str(self.files[(repo_id, filename)])


@pytest.fixture
def weights(reference_model: torch.nn.Module, tmp_path: Path) -> Path:
    path = tmp_path / "open_clip_model.safetensors"
    save_checkpoint(reference_model, path)
    return path


def _assert_same_weights(loaded, reference_model) -> None:
    for name, tensor in reference_model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


def test_pretrained_tag(no_network, weights: Path, reference_model: torch.nn.Module,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    tag = {"url": "", "hf_hub": "fake-org/fake-demo/", "mean": (0.5, 0.5, 0.5),
           "std": (0.25, 0.25, 0.25), "interpolation": "bilinear", "resize_mode": "squash",
           "quick_gelu": True}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, DEMO_ARCH, {"unittest": tag})
    hub = FakeHub({("fake-org/fake-demo", "open_clip_model.safetensors"): weights})
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", hub)
    loaded = load_model(f"{DEMO_ARCH}:unittest", device="cpu")
    assert hub.requests == [("fake-org/fake-demo", "open_clip_model.safetensors")]
    assert loaded.arch == DEMO_ARCH and loaded.spec == f"{DEMO_ARCH}:unittest"
    _assert_same_weights(loaded, reference_model)
    # The tag's preprocessing and activation (OpenAI weights need QuickGELU) are applied.
    description = json.loads(loaded.preprocess_description)
    assert (description["mean"], description["std"]) == ([0.5] * 3, [0.25] * 3)
    assert (description["interpolation"], description["resize_mode"]) == ("bilinear", "squash")
    assert any(type(m).__name__ == "QuickGELU" for m in loaded.model.modules())
    assert loaded.default_prompts == FAIRVLMED_PROMPTS


def test_openai_tag_goes_to_the_hub_and_fails_cleanly(no_network,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub({})
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", hub)
    with pytest.raises(ModelError) as error:
        load_model("ViT-B-16:openai", device="cpu")
    assert "ViT-B-16:openai: could not download the weights" in str(error.value)
    assert "\n" not in str(error.value)
    assert hub.requests and all(repo == "timm/vit_base_patch16_clip_224.openai"
                                for repo, _ in hub.requests)


def test_hf_hub(no_network, weights: Path, reference_model: torch.nn.Module,
                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "open_clip_config.json"
    config.write_text(json.dumps({
        "model_cfg": open_clip.get_model_config(DEMO_ARCH),
        "preprocess_cfg": {"mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2]},
    }))
    repo = "fake-org/tiny-clip"
    hub = FakeHub({(repo, "open_clip_config.json"): config,
                   (repo, "open_clip_model.safetensors"): weights})
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", hub)
    loaded = load_model(f"hf-hub:{repo}", device="cpu")
    assert loaded.arch == f"hf-hub:{repo}"
    assert {name for _, name in hub.requests} <= {"open_clip_config.json",
                                                   "open_clip_model.safetensors"}
    _assert_same_weights(loaded, reference_model)
    assert json.loads(loaded.preprocess_description)["mean"] == [0.4, 0.4, 0.4]
    assert loaded.context_length == 32
    assert loaded.tokenizer(["healthy rim"]).shape == (1, 32)


def test_hf_hub_missing_repo(no_network, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", FakeHub({}))
    with pytest.raises(ModelError, match="hf-hub:nobody/nothing: could not download"):
        load_model("hf-hub:nobody/nothing", device="cpu")
