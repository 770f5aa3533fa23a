"""Reading checkpoint files safely, and writing them atomically.

Reading never executes code from the file: ``.safetensors`` files are read by safetensors;
anything else by ``torch.load(weights_only=True)``, which unpickles tensors, containers and
numbers only. A pickle that needs any other Python object (and could therefore run arbitrary
code while loading) is refused with a one-line :class:`~fairvlm.errors.ModelError` explaining
how to convert it to safetensors in an environment the user trusts. TorchScript archives
(OpenAI's original ``*.pt`` downloads) are refused the same way.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from fairvlm.errors import ModelError
from fairvlm.paths import atomic_write

CHECKPOINT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
ARCH_METADATA_KEY = "fairvlm.arch"
# Phrases of torch's weights-only unpickler when a file asks for code rather than data.
_CODE_SIGNS: tuple[str, ...] = ("Unsupported global", "unrecognized function", "Can only build",
                                "Unsupported class")



def read_checkpoint(path: str | os.PathLike[str]) -> tuple[object, dict[str, str]]:
    """Load a checkpoint file without executing code from it.

    Returns
    -------
    (checkpoint, metadata)
        The loaded object (a state dict, or a dict holding one) and the safetensors header
        metadata (empty for other formats).

    Raises
    ------
    ModelError
        Missing file, unsupported extension, a corrupt file, or a pickle that needs code.
    """
    file = Path(path)
    if not file.is_file():
        what = "is a folder" if file.is_dir() else "does not exist"
        raise ModelError(f"{file}: {what}; expected a checkpoint file "
                         f"({', '.join(CHECKPOINT_SUFFIXES)})")
    suffix = file.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ModelError(f"{file}: unsupported checkpoint extension {suffix or '(none)'!r}; "
                         f"expected one of {', '.join(CHECKPOINT_SUFFIXES)}")
    if suffix == ".safetensors":
        return _read_safetensors(file)
    return _read_pickle(file), {}


def save_checkpoint(model: torch.nn.Module | Mapping[str, torch.Tensor],
                    path: str | os.PathLike[str], *, arch: str | None = None) -> Path:
    """Write a model's weights to ``path`` as safetensors, atomically.

    The file appears complete or not at all (temporary file in the same folder, then
    ``os.replace``). ``arch``, when given, is stored in the header metadata so that
    :func:`fairvlm.models.load_model` rebuilds the same architecture (weights cannot tell
    QuickGELU from GELU).
    """
    target = Path(path)
    if target.suffix != ".safetensors":
        raise ModelError(f"{target}: checkpoints are written as safetensors; "
                         "expected a path ending in .safetensors")
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    metadata = {"format": "pt", **({ARCH_METADATA_KEY: arch} if arch else {})}
    payload = safetensors.torch.save(tensors, metadata=metadata)
    with atomic_write(target) as handle:
        handle.write(payload)
    return target


def _read_safetensors(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safetensors.safe_open(str(file), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise ModelError(f"{file}: not a readable safetensors file ({_short(error)})") from None
    return tensors, metadata


def _read_pickle(file: Path) -> object:
    if _is_torchscript(file):
        raise ModelError(
            f"{file}: is a TorchScript archive (such as OpenAI's original CLIP downloads), which "
            "fairvlm does not load because it holds code; use the open_clip name instead "
            "(e.g. ViT-B-16:openai) or convert it to a state dict in safetensors",
            hint=_convert_hint(file, f"torch.jit.load('{file}', map_location='cpu')"),
        )
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickler_reason(error)
        needed = re.search(r"GLOBAL ([\w.]+)", reason)
        if needed is None and not any(sign in reason for sign in _CODE_SIGNS):
            raise ModelError(f"{file}: not a PyTorch checkpoint ({_short(reason)})") from None
        what = needed.group(1) if needed else "a Python object"
        raise ModelError(
            f"{file}: refused: loading it would run code ({what} is not a tensor, container or "
            "number), and an untrusted pickle can run any command; save the weights with "
            "safetensors or as a plain state dict",
            hint=_convert_hint(
                file, f"torch.load('{file}', map_location='cpu', weights_only=False)"),
        ) from None
    except Exception as error:  # torch.load fails in many ways on a damaged file
        raise ModelError(f"{file}: not a readable PyTorch checkpoint ({_short(error)})") from None


def _unpickler_reason(error: pickle.UnpicklingError) -> str:
    """The part of torch's weights-only error that says what was refused."""
    text = str(error)
    _, marker, rest = text.partition("WeightsUnpickler error:")
    reason = rest.split("Check the documentation")[0] if marker else text
    return " ".join(reason.split())


def _convert_hint(file: Path, loader: str) -> str:
    """A one-line command converting ``file`` to safetensors, to run only if it is trusted."""
    target = file.with_suffix(".safetensors")
    return (
        "if you trust the file, convert it where running its code is acceptable: python -c "
        f"\"import torch, safetensors.torch as st; obj = {loader}; "
        "sd = obj.get('model_state_dict', obj) if isinstance(obj, dict) else obj.state_dict(); "
        f"st.save_file({{k: v.contiguous() for k, v in sd.items()}}, '{target}')\" "
        "and pass the .safetensors file"
    )


def _is_torchscript(file: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder next to ``data.pkl``."""
    if not zipfile.is_zipfile(file):
        return False
    with zipfile.ZipFile(file) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 160 else text[:157] + "..."
