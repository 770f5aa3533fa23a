"""Unsafe, corrupt and ill-fitting checkpoints are refused with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fairvlm.errors import ModelError
from fairvlm.models import load_model
from fairvlm.models.architectures import DEMO_ARCH


class Payload:
    """Unpickling this object creates ``canary``: stands for any code a pickle may run."""

    def __init__(self, canary: Path) -> None:
        self.canary = str(canary)

    def __reduce__(self):
        return (open, (self.canary, "w"))


def _message(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_malicious_pickle_is_refused(reference_model: torch.nn.Module, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "clip_ep001.pth"
    torch.save({"model_state_dict": reference_model.state_dict(), "extra": Payload(canary)},
               path)
    with pytest.raises(ModelError) as error:
        load_model(str(path), device="cpu")
    assert not canary.exists()
    message = _message(error)
    assert "refused" in message and "run code" in message and "io.open" in message
    assert "safetensors" in error.value.hint and "weights_only=False" in error.value.hint
    # The payload is real: an unsafe load would have run it.
    torch.load(path, weights_only=False)
    assert canary.exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ViT-B-16.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(ModelError) as error:
        load_model(str(path), device="cpu")
    assert "TorchScript" in _message(error) and "ViT-B-16:openai" in str(error.value)
    assert "torch.jit.load" in error.value.hint


@pytest.mark.parametrize("name, content, expected", [
    ("garbage.pt", b"\x00\x01 definitely not a checkpoint", "not a PyTorch checkpoint"),
    ("truncated.pt", b"\x80\x02}q\x00(X", "not a"),
    ("garbage.safetensors", b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}", "not a readable safetensors"),
    ("empty.bin", b"", "not a readable PyTorch checkpoint"),
    ("weights.txt", b"0.1 0.2", "unsupported checkpoint extension '.txt'"),
])
def test_corrupt_or_unknown_files(tmp_path: Path, name: str, content: bytes,
                                  expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelError) as error:
        load_model(str(path), device="cpu")
    assert expected in _message(error)


def test_no_state_dict_inside(tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    torch.save({"epoch": 3, "notes": "no weights here"}, path)
    with pytest.raises(ModelError) as error:
        load_model(str(path), device="cpu", arch=DEMO_ARCH)
    assert "entry 'epoch' is of type int, not a tensor" in _message(error)
    torch.save({}, path)
    with pytest.raises(ModelError, match="holds no state dict"):
        load_model(str(path), device="cpu", arch=DEMO_ARCH)


def _damaged(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = dict(model.state_dict())
    del state["ln_final.bias"]
    state["visual.attnpool.c_proj.weight"] = state["visual.attnpool.c_proj.weight"][:, :10]
    state["head.extra.weight"] = torch.zeros(3)
    return state


def test_wrong_shapes_with_arch(reference_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "damaged.pt"
    torch.save(_damaged(reference_model), path)
    with pytest.raises(ModelError) as error:
        load_model(str(path), device="cpu", arch=DEMO_ARCH)
    message = _message(error)
    assert f"does not fit architecture {DEMO_ARCH}" in message
    assert "1 missing (ln_final.bias)" in message
    assert "1 unexpected (head.extra.weight)" in message
    assert "1 with the wrong shape (visual.attnpool.c_proj.weight [64, 10] vs [64, 1024])" \
        in message
    assert len(message) < 400


def test_wrong_shapes_without_arch(reference_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "damaged.safetensors"
    import safetensors.torch

    safetensors.torch.save_file({k: v.contiguous() for k, v in _damaged(reference_model).items()},
                                str(path))
    with pytest.raises(ModelError) as error:
        load_model(str(path), device="cpu")
    message = _message(error)
    assert "cannot tell the architecture" in message and "--arch" in message
    assert f"closest is {DEMO_ARCH}" in message


def test_many_mismatches_stay_short(reference_model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "renamed.pt"
    torch.save({f"encoder.{k}": v for k, v in reference_model.state_dict().items()}, path)
    with pytest.raises(ModelError) as error:
        load_model(str(path), device="cpu", arch=DEMO_ARCH)
    message = _message(error)
    count = len(reference_model.state_dict())
    assert f"{count} missing" in message and f"{count} unexpected" in message
    assert message.count(", ...") == 2 and len(message) < 400
