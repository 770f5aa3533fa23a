"""Every checkpoint layout loads back to the same weights, with the architecture inferred."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import open_clip
import pytest
import safetensors.torch
import torch

from fairvlm.errors import ModelError
from fairvlm.models import load_model, save_checkpoint, weights_fingerprint
from fairvlm.models.architectures import DEMO_ARCH, expected_shapes, infer_architecture

OPENAI_JIT_METADATA = {
    "input_resolution": torch.tensor(64),
    "context_length": torch.tensor(32),
    "vocab_size": torch.tensor(49408),
}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _optimizer_state(model: torch.nn.Module) -> dict:
    """A real AdamW state after one step, as FairCLIP saves next to the weights."""
    copy = {k: torch.nn.Parameter(v.clone()) for k, v in model.state_dict().items()
            if v.is_floating_point()}
    optimizer = torch.optim.AdamW(list(copy.values())[:3], lr=1e-5)
    sum(p.sum() for p in list(copy.values())[:3]).backward()
    optimizer.step()
    return optimizer.state_dict()


def write_fairvlm(model, path):
    save_checkpoint(model, path, arch=DEMO_ARCH)


def write_safetensors_plain(model, path):
    safetensors.torch.save_file(_state(model), str(path))


def write_torch_state_dict(model, path):
    torch.save(_state(model), path)


def write_open_clip_training(model, path):
    torch.save({"epoch": 4, "name": "run-1",
                "state_dict": {f"module.{k}": v for k, v in _state(model).items()},
                "optimizer": _optimizer_state(model)}, path)


def write_openai_clip(model, path):
    """``clip.load(...)[0].state_dict()`` of OpenAI's TorchScript model: extra int entries."""
    torch.save({**_state(model), **OPENAI_JIT_METADATA}, path)


def write_fairclip(model, path):
    """FairCLIP's ``torch.save({'epoch', 'model_state_dict', 'optimizer_state_dict', ...})``."""
    wrapped = {f"module.{k}": v for k, v in _state(model).items()}
    torch.save({"epoch": 9, "model_state_dict": wrapped,
                "optimizer_state_dict": _optimizer_state(model), "total_loss": 1.25}, path)


FORMATS: dict[str, tuple[str, Callable]] = {
    "fairvlm-safetensors": (".safetensors", write_fairvlm),
    "open_clip-safetensors": (".safetensors", write_safetensors_plain),
    "open_clip-pt": (".pt", write_torch_state_dict),
    "open_clip-bin": (".bin", write_torch_state_dict),
    "open_clip-training-pth": (".pth", write_open_clip_training),
    "openai-clip-pt": (".pt", write_openai_clip),
    "fairclip-pth": (".pth", write_fairclip),
}


@pytest.mark.parametrize("layout", sorted(FORMATS))
def test_round_trip(layout: str, reference_model: torch.nn.Module, tmp_path: Path) -> None:
    suffix, write = FORMATS[layout]
    path = tmp_path / f"checkpoint{suffix}"
    write(reference_model, path)
    loaded = load_model(str(path), device="cpu")
    assert loaded.arch == DEMO_ARCH
    assert loaded.device == "cpu" and not loaded.model.training
    reference = reference_model.state_dict()
    restored = loaded.model.state_dict()
    assert restored.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(restored[name], tensor), name
    assert loaded.fingerprint == weights_fingerprint(reference_model)
    assert loaded.context_length == 32
    assert loaded.tokenizer(["a note"]).shape == (1, 32)


def test_fairclip_half_precision(reference_model: torch.nn.Module, tmp_path: Path) -> None:
    """The OpenAI CLIP package keeps weights in float16; they load into a float32 model."""
    path = tmp_path / "clip_ep009.pth"
    half = {f"module.{k}": (v.half() if v.is_floating_point() else v)
            for k, v in _state(reference_model).items()}
    torch.save({"epoch": 9, "model_state_dict": half}, path)
    loaded = load_model(str(path), device="cpu", arch=DEMO_ARCH)
    for name, tensor in reference_model.state_dict().items():
        restored = loaded.model.state_dict()[name]
        assert restored.dtype == tensor.dtype
        if tensor.is_floating_point():
            torch.testing.assert_close(restored, tensor.half().float())
    assert loaded.fingerprint != weights_fingerprint(reference_model)


def test_outputs_match_the_reference(reference_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(reference_model, path, arch=DEMO_ARCH)
    loaded = load_model(str(path), device="cpu")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    tokens = open_clip.get_tokenizer(DEMO_ARCH)(["cup-to-disc ratio 0.8", "healthy rim"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.encode_image(images),
                                   reference_model.encode_image(images))
        torch.testing.assert_close(loaded.model.encode_text(tokens),
                                   reference_model.encode_text(tokens))


def test_separate_text_module_layout(reference_model: torch.nn.Module, tmp_path: Path) -> None:
    """A standard-layout state dict loads into open_clip's CustomTextCLIP (``text.*`` names)."""
    path = tmp_path / "model.pt"
    write_torch_state_dict(reference_model, path)
    custom = open_clip.create_model(DEMO_ARCH, force_custom_text=True)
    open_clip.load_checkpoint(custom, str(path))  # open_clip's own conversion, as a reference
    from fairvlm.models import keymap

    state = keymap.normalise(torch.load(path, weights_only=True), source=str(path))
    expected = {k: tuple(v.shape) for k, v in custom.state_dict().items()}
    adapted = keymap.adapt_to(state, expected)
    assert set(adapted.tensors) == set(custom.state_dict())
    for name, tensor in custom.state_dict().items():
        assert torch.equal(adapted.tensors[name], tensor), name


def test_quickgelu_twin_is_chosen_by_origin() -> None:
    """Weights cannot tell GELU from QuickGELU: OpenAI-derived files get the QuickGELU twin."""
    shapes = expected_shapes("RN50")
    assert infer_architecture(shapes, source="x", prefer_quickgelu=False) == "RN50"
    assert infer_architecture(shapes, source="x", prefer_quickgelu=True) == "RN50-quickgelu"


@pytest.fixture
def quickgelu_twin(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register a ``-quickgelu`` twin of the demo architecture for one test."""
    name = f"{DEMO_ARCH}-quickgelu"
    config = {**open_clip.get_model_config(DEMO_ARCH), "quick_gelu": True}
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, name, config)
    return name


def _activations(model: torch.nn.Module) -> set[str]:
    return {type(m).__name__ for m in model.modules() if "GELU" in type(m).__name__}


def test_twin_choice_on_load(quickgelu_twin: str, reference_model: torch.nn.Module,
                             tmp_path: Path) -> None:
    fairclip, plain, named = (tmp_path / n for n in ("a.pth", "b.pt", "c.safetensors"))
    write_fairclip(reference_model, fairclip)
    write_torch_state_dict(reference_model, plain)
    save_checkpoint(reference_model, named, arch=quickgelu_twin)
    from_fairclip = load_model(str(fairclip), device="cpu")
    assert (from_fairclip.arch, _activations(from_fairclip.model)) == (quickgelu_twin,
                                                                       {"QuickGELU"})
    from_plain = load_model(str(plain), device="cpu")
    assert (from_plain.arch, _activations(from_plain.model)) == (DEMO_ARCH, {"GELU"})
    from_named = load_model(str(named), device="cpu")
    assert from_named.arch == quickgelu_twin
    assert from_named.fingerprint != from_plain.fingerprint  # same weights, other activation


def test_save_checkpoint_is_atomic(reference_model: torch.nn.Module, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(reference_model, path, arch=DEMO_ARCH)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with torch.no_grad():
        changed = {k: v + 1 if v.is_floating_point() else v
                   for k, v in reference_model.state_dict().items()}
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(changed, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_recorded_prompts_come_back_and_bad_ones_are_one_line(tmp_path, reference_model):
    from fairvlm.models.checkpoints import PROMPTS_METADATA_KEY
    from fairvlm.models.prompts import DEMO_PROMPTS, FAIRVLMED_PROMPTS

    plain_file = save_checkpoint(reference_model, tmp_path / "plain.safetensors", arch=DEMO_ARCH)
    assert load_model(str(plain_file), device="cpu").default_prompts == FAIRVLMED_PROMPTS
    recorded = save_checkpoint(reference_model, tmp_path / "run.safetensors", arch=DEMO_ARCH,
                               prompts=DEMO_PROMPTS)
    assert load_model(str(recorded), device="cpu").default_prompts == DEMO_PROMPTS
    tensors = safetensors.torch.load_file(str(recorded))
    bad = tmp_path / "bad.safetensors"
    safetensors.torch.save_file(tensors, str(bad), metadata={
        "fairvlm.arch": DEMO_ARCH, PROMPTS_METADATA_KEY: '{"1": ["glaucoma"]}'})
    with pytest.raises(ModelError) as caught:
        load_model(str(bad), device="cpu")
    assert str(caught.value) == (
        f"{bad}: metadata fairvlm.prompts: unreadable; expected JSON class prompts "
        '{"0": [text, ...], "1": [text, ...]} as fairvlm writes')
