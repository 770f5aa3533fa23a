"""Reading checkpoint files safely, and writing them atomically.

Reading never executes code from the file: ``.safetensors`` files are read by safetensors;
anything else by ``torch.load(weights_only=True)``, which unpickles tensors, containers and
numbers only. A pickle that needs any other Python object (and could therefore run arbitrary
code while loading) is refused with a one-line :class:`~fairvlm.errors.ModelError` naming the
object and explaining how to convert the file to safetensors in an environment the user
trusts. TorchScript archives (OpenAI's original ``*.pt`` downloads) are refused the same way.

Before ``torch.load`` sees a file, its container is checked, so that each kind of wrong file
gets its own line rather than a message from torch's internals: an empty file, a zip archive
that is truncated or holds no ``data.pkl`` (e.g. an ``.npz`` renamed), and bytes that are
neither a zip archive nor a pickle. The objects a pickle imports are listed by reading its
opcodes (:mod:`pickletools`, which never executes them), to name what a refused file asked for
when torch's own message does not.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from fairvlm.errors import ModelError
from fairvlm.paths import atomic_write

CHECKPOINT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
ARCH_METADATA_KEY = "fairvlm.arch"
# The zero-shot class prompts a model was trained or evaluated with, as JSON {"0": [...], ...}.
PROMPTS_METADATA_KEY = "fairvlm.prompts"
# Phrases of torch's weights-only unpickler when a file asks for code rather than data.
_CODE_SIGNS: tuple[str, ...] = ("Unsupported global", "unrecognized function", "Can only build",
                                "Unsupported class")
_ZIP_MAGIC = b"PK\x03\x04"
_STRING_OPCODES = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                             "SHORT_BINSTRING", "BINSTRING", "STRING"})
_GET_OPCODES = frozenset({"GET", "BINGET", "LONG_BINGET"})
_PUT_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
# Modules whose globals a checkpoint's pickle legitimately imports (tensor rebuilders, dicts).
_DATA_MODULES: tuple[str, ...] = ("torch.", "collections.")


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
                    path: str | os.PathLike[str], *, arch: str | None = None,
                    prompts: Mapping[int, Sequence[str]] | None = None) -> Path:
    """Write a model's weights to ``path`` as safetensors, atomically.

    The file appears complete or not at all (temporary file in the same folder, then
    ``os.replace``). ``arch``, when given, is stored in the header metadata so that
    :func:`fairvlm.models.load_model` rebuilds the same architecture (weights cannot tell
    QuickGELU from GELU); ``prompts``, the class prompts the model was trained and evaluated
    with, so that loading the file scores it with them again.
    """
    target = Path(path)
    if target.suffix != ".safetensors":
        raise ModelError(f"{target}: checkpoints are written as safetensors; "
                         "expected a path ending in .safetensors")
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    metadata = {"format": "pt", **({ARCH_METADATA_KEY: arch} if arch else {})}
    if prompts:
        metadata[PROMPTS_METADATA_KEY] = json.dumps(
            {str(label): list(texts) for label, texts in sorted(prompts.items())})
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
        reason = "the file is empty" if file.stat().st_size == 0 else _short(error)
        raise ModelError(f"{file}: not a readable safetensors file ({reason}); expected a "
                         "complete file written by safetensors") from None
    return tensors, metadata


def _read_pickle(file: Path) -> object:
    _check_container(file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns on stderr about pickle protocols
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickler_reason(error)
        needed = re.search(r"GLOBAL ([\w.]+)", reason)
        what = needed.group(1) if needed else _first_foreign_global(file)
        if what is None and not any(sign in reason for sign in _CODE_SIGNS):
            raise ModelError(f"{file}: not a PyTorch checkpoint ({_short(reason)})") from None
        raise ModelError(
            f"{file}: refused: loading it would run code ({what or 'a Python object'} is not a "
            "tensor, container or number), and an untrusted pickle can run any command; save "
            "the weights with safetensors or as a plain state dict",
            hint=_convert_hint(
                file, f"torch.load('{file}', map_location='cpu', weights_only=False)"),
        ) from None
    except Exception as error:  # torch.load fails in many ways on a damaged file
        raise ModelError(f"{file}: not a readable PyTorch checkpoint ({_short(error)})") from None


def _check_container(file: Path) -> None:
    """Refuse a file ``torch.load`` could not read as a checkpoint, naming what it is instead.

    ``torch.save`` writes a zip archive holding ``<name>/data.pkl`` (or, before PyTorch 1.6, a
    sequence of pickles). TorchScript archives hold ``code/`` as well.
    """
    with file.open("rb") as handle:
        head = handle.read(len(_ZIP_MAGIC))
    if not head:
        raise ModelError(f"{file}: not a readable PyTorch checkpoint (the file is empty)")
    if head == _ZIP_MAGIC:
        try:
            with zipfile.ZipFile(file) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError):
            raise ModelError(f"{file}: not a readable PyTorch checkpoint (a truncated or damaged "
                             "zip archive); expected a complete file written by torch.save"
                             ) from None
        if any("/code/" in name or name.startswith("code/") for name in names):
            raise ModelError(
                f"{file}: is a TorchScript archive (such as OpenAI's original CLIP downloads), "
                "which fairvlm does not load because it holds code; use the open_clip name "
                "instead (e.g. ViT-B-16:openai) or convert it to a state dict in safetensors",
                hint=_convert_hint(file, f"torch.jit.load('{file}', map_location='cpu')"),
            )
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise ModelError(f"{file}: not a PyTorch checkpoint (a zip archive without data.pkl, "
                             f"holding {shown or 'nothing'}); expected a file written by "
                             "torch.save, or a .safetensors file")
    elif _pickle_globals(file) is None:
        raise ModelError(f"{file}: not a PyTorch checkpoint (neither a zip archive written by "
                         "torch.save nor a pickle); expected a file written by torch.save, or a "
                         ".safetensors file")


def _pickle_globals(file: Path) -> list[str] | None:
    """``module.name`` of every global the file's first pickle imports, read from its opcodes
    without executing any; None when the file does not start with a complete pickle.

    ``STACK_GLOBAL`` (protocol 4) takes its two names from the stack: they are the last two
    strings pushed, directly or through the memo.
    """
    found: list[str] = []
    strings: list[str] = []
    memo: dict[int, str | None] = {}
    last: str | None = None
    try:
        with file.open("rb") as handle:
            for opcode, arg, _ in pickletools.genops(handle):
                name = opcode.name
                if name in _PUT_OPCODES or name == "MEMOIZE":
                    memo[len(memo) if name == "MEMOIZE" else arg] = last
                    continue
                last = None
                if name in _STRING_OPCODES:
                    last = arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
                elif name in _GET_OPCODES:
                    last = memo.get(arg)
                elif name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                if last is not None:
                    strings.append(last)
    except Exception:  # malformed bytes raise many types inside pickletools
        return None
    return found


def _first_foreign_global(file: Path) -> str | None:
    """The first global of the file's first pickle from outside torch and collections."""
    names = _pickle_globals(file) or []
    return next((name for name in names if not name.startswith(_DATA_MODULES)), None)


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


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 160 else text[:157] + "..."
