"""Malformed checkpoints and model specs: each refused with one exact line, the same from
``fairvlm audit --model`` and from the app's "Load model" button; no pickle payload ever runs
(its canary file is never created) and nothing saved changes.

Files are variations of the tiny demo-architecture checkpoint, written under the app's only
data root so one app session tries them all after loading a good model first: the model in
use must stay that one after every refusal.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import pytest
import safetensors.torch
import torch

from fairvlm.models import save_checkpoint
from fairvlm.models.architectures import DEMO_ARCH
from fairvlm.ui.state import MODEL_KEY

EXTENSIONS = ".safetensors, .pt, .pth, .bin, .ckpt"
TORCH_SAVE = "expected a file written by torch.save, or a .safetensors file"
REFUSED = ("refused: loading it would run code (io.open is not a tensor, container or "
           "number), and an untrusted pickle can run any command; save the weights with "
           "safetensors or as a plain state dict")
WRONG_SHAPE = "1 with the wrong shape (visual.attnpool.c_proj.weight [64, 10] vs [64, 1024])"

State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ModelCase:
    """A bad model. ``build(folder, make, state)`` writes it (``state``: the tiny checkpoint's
    tensors) and returns the spec to type; ``message`` and ``names`` are templates of
    ``{folder}`` and ``{spec}``."""

    name: str
    build: Callable[[Path, type, State], str]
    message: str
    names: tuple[str, ...] = ("{spec}",)


def _file(name: str, content: bytes) -> Callable[[Path, type, State], str]:
    def build(folder: Path, make, state: State) -> str:
        (folder / name).write_bytes(content)
        return str(folder / name)
    return build


def _spec(text: str) -> Callable[[Path, type, State], str]:
    return lambda folder, make, state: text.format(folder=folder)


def _narrowed(state: State) -> State:
    wrong = dict(state)
    wrong["visual.attnpool.c_proj.weight"] = wrong["visual.attnpool.c_proj.weight"][:, :10]
    return wrong


def wrong_shapes(folder: Path, make, state: State) -> str:
    return str(save_checkpoint(_narrowed(state), folder / "narrow.safetensors", arch=DEMO_ARCH))


def wrong_shapes_without_arch(folder: Path, make, state: State) -> str:
    torch.save(_narrowed(state), folder / "narrow.pt")
    return str(folder / "narrow.pt")


def npz_renamed(folder: Path, make, state: State) -> str:
    np.savez(folder / "scan.npz", slo_fundus=make.fundus(0))
    return str((folder / "scan.npz").rename(folder / "scan.pth"))


def png_renamed(folder: Path, make, state: State) -> str:
    return str(make.gray(folder / "fundus.png").rename(folder / "fundus.safetensors"))


def truncated(suffix: str) -> Callable[[Path, type, State], str]:
    def build(folder: Path, make, state: State) -> str:
        path = folder / f"cut{suffix}"
        if suffix == ".pt":
            torch.save(state, path)
        else:
            save_checkpoint(state, path, arch=DEMO_ARCH)
        return str(make.truncate(path))
    return build


def payload_in_torch_save(folder: Path, make, state: State) -> str:
    torch.save({"state_dict": state, "extra": make.canary_payload(folder)}, folder / "ep1.pt")
    return str(folder / "ep1.pt")


def payload_in_plain_pickle(folder: Path, make, state: State) -> str:
    (folder / "model.bin").write_bytes(pickle.dumps(make.canary_payload(folder), protocol=4))
    return str(folder / "model.bin")


def torchscript(folder: Path, make, state: State) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(folder / "ViT-B-16.pt"))
    return str(folder / "ViT-B-16.pt")


def nan_weights(folder: Path, make, state: State) -> str:
    broken = {name: tensor.clone() for name, tensor in state.items()}
    broken["visual.attnpool.c_proj.weight"][3, 5] = float("nan")
    return str(save_checkpoint(broken, folder / "diverged.safetensors", arch=DEMO_ARCH))


def no_tensors(folder: Path, make, state: State) -> str:
    torch.save({"epoch": 3, "notes": "weights were not saved"}, folder / "run.pt")
    return str(folder / "run.pt")


def _tags() -> str:
    return ", ".join(open_clip.list_pretrained_tags_by_model("ViT-B-16"))


CASES = [
    ModelCase("wrong-shapes", wrong_shapes,
              f"{{spec}}: does not fit architecture {DEMO_ARCH}: {WRONG_SHAPE}"),
    ModelCase("wrong-shapes-without-arch", wrong_shapes_without_arch,
              "{spec}: cannot tell the architecture from its 165 tensors; closest is "
              f"{DEMO_ARCH}: {WRONG_SHAPE}; choose its open_clip architecture (e.g. ViT-B-16) "
              "with --arch (command line) or the Architecture field (app)"),
    ModelCase("text-file-named-pt", _file("notes.pt", b"these are not weights\n"),
              "{spec}: not a PyTorch checkpoint (neither a zip archive written by torch.save "
              f"nor a pickle); {TORCH_SAVE}"),
    ModelCase("npz-named-pth", npz_renamed,
              "{spec}: not a PyTorch checkpoint (a zip archive without data.pkl, holding "
              f"slo_fundus.npy); {TORCH_SAVE}"),
    ModelCase("png-named-safetensors", png_renamed,
              "{spec}: not a readable safetensors file (Error while deserializing header: "
              "header too large); expected a complete file written by safetensors"),
    ModelCase("truncated-pt", truncated(".pt"),
              "{spec}: not a readable PyTorch checkpoint (a truncated or damaged zip "
              "archive); expected a complete file written by torch.save"),
    ModelCase("truncated-safetensors", truncated(".safetensors"),
              "{spec}: not a readable safetensors file (Error while deserializing header: "
              "incomplete metadata, file not fully covered); expected a complete file written "
              "by safetensors"),
    ModelCase("empty-pt", _file("empty.pt", b""),
              "{spec}: not a readable PyTorch checkpoint (the file is empty)"),
    ModelCase("pickle-payload-in-torch-save", payload_in_torch_save, f"{{spec}}: {REFUSED}"),
    ModelCase("pickle-payload-in-plain-pickle", payload_in_plain_pickle, f"{{spec}}: {REFUSED}"),
    ModelCase("torchscript-archive", torchscript,
              "{spec}: is a TorchScript archive (such as OpenAI's original CLIP downloads), "
              "which fairvlm does not load because it holds code; use the open_clip name "
              "instead (e.g. ViT-B-16:openai) or convert it to a state dict in safetensors"),
    ModelCase("nan-weights", nan_weights,
              "{spec}: entry 'visual.attnpool.c_proj.weight' holds 1 NaN or infinite value(s) "
              "of 65536; expected finite weights",
              names=("{spec}", "visual.attnpool.c_proj.weight")),
    ModelCase("no-tensors-inside", no_tensors,
              "{spec}: entry 'epoch' is of type int, not a tensor; expected a state dict of "
              "tensors"),
    ModelCase("unsupported-extension", _file("model.onnx", b"\x08\x07onnx"),
              f"{{spec}}: unsupported checkpoint extension '.onnx'; expected one of {EXTENSIONS}"),
    ModelCase("folder-as-model", _spec("{folder}"),
              f"{{spec}}: is a folder; expected a checkpoint file ({EXTENSIONS})"),
    ModelCase("missing-file", _spec("{folder}/absent.safetensors"),
              f"{{spec}}: file not found; expected an existing checkpoint file ({EXTENSIONS})"),
    ModelCase("unknown-model-spec", _spec("not-a-model"),
              "unknown model spec '{spec}'; expected demo; ARCH:TAG (an open_clip architecture "
              "and pretrained tag, e.g. ViT-B-16:openai); hf-hub:ORG/NAME; or the path of a "
              f"checkpoint file ({EXTENSIONS})"),
    ModelCase("unknown-pretrained-tag", _spec("ViT-B-16:nonsense"),
              "model spec '{spec}': unknown pretrained tag 'nonsense' for ViT-B-16; available "
              "tags: {tags}"),
]


@dataclass(frozen=True)
class Built:
    folder: Path
    spec: str
    message: str
    names: tuple[str, ...]


@pytest.fixture(scope="module")
def corpus(robust_home: Path, make) -> dict[str, Built]:
    """Every case written under the app's data root, its templates filled in."""
    state = safetensors.torch.load_file(str(robust_home / "tiny.safetensors"))
    built = {}
    for case in CASES:
        folder = robust_home / "model-corpus" / case.name
        folder.mkdir(parents=True)
        spec = case.build(folder, make, state)
        values = {"folder": folder, "spec": spec, "tags": _tags()}
        built[case.name] = Built(folder, spec, case.message.format(**values),
                                 tuple(name.format(**values) for name in case.names))
    return built


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_audit_refuses_the_model_in_one_line(case: ModelCase, corpus, app_env: Path, run_cli,
                                             messages, snapshot, make) -> None:
    built = corpus[case.name]
    before = snapshot(app_env)
    out = built.folder / "report"
    outcome = run_cli("audit", "--data", app_env / "demo" / "data", "--model", built.spec,
                      "--out", out, "--device", "cpu", "--quiet")
    messages.check(messages.refusal(outcome), built.message, built.names)
    assert not out.exists()
    assert snapshot(app_env) == before
    assert not (built.folder / make.CANARY).exists()


def test_the_app_shows_the_same_lines(corpus, app_user, robust_home: Path, messages, snapshot,
                                      make) -> None:
    """One app session: the tiny model loads, then every bad spec is refused and the tiny
    model stays the one in use."""
    app_user.load_model(str(robust_home / "tiny.safetensors"))
    in_use = app_user.model_in_use
    assert not app_user.errors and in_use is not None and in_use.arch == DEMO_ARCH
    wrong = []
    for case in CASES:
        built = corpus[case.name]
        before = snapshot(robust_home)
        app_user.load_model(built.spec)
        if len(app_user.errors) != 1 or not messages.shown(built.message, app_user.errors):
            wrong.append((case.name, app_user.errors))
        if (app_user.model_in_use != in_use
                or app_user.app.session_state[MODEL_KEY].spec != in_use.spec):
            wrong.append((case.name, "the model in use changed"))
        if snapshot(robust_home) != before:
            wrong.append((case.name, "files under the home changed"))
        if (built.folder / make.CANARY).exists():
            wrong.append((case.name, "the pickle's payload ran"))
    assert not wrong


def test_the_payloads_are_real(corpus, make) -> None:
    """Unpickling the two payload files without protection does create the canary: the
    refusals above are what kept it from running."""
    loaders = {  # each payload returns the canary's open file
        "pickle-payload-in-torch-save": lambda path: torch.load(path, weights_only=False)["extra"],
        "pickle-payload-in-plain-pickle": lambda path: pickle.loads(path.read_bytes()),
    }
    for name, unsafe_load in loaders.items():
        built = corpus[name]
        unsafe_load(Path(built.spec)).close()
        assert (built.folder / make.CANARY).is_file()
        (built.folder / make.CANARY).unlink()
