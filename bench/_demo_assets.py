"""Shared by the bench scripts: a demo data set and a random-weight demo model, made once."""

from __future__ import annotations

from pathlib import Path


def prepare(cache: Path, subjects: int, image_size: int,
            split_fractions: tuple[float, float, float] | None = None,
            size_label: int | None = None) -> tuple[Path, Path]:
    """The demo folder of ``subjects`` pairs and a demo-architecture checkpoint in ``cache``.

    Both are generated when missing (seed 0; the model's weights are seeded random, as the
    timings do not depend on them). ``split_fractions`` (train, val, test) defaults to the
    demo's own; the folder is ``demo-{size_label or subjects}-{image_size}px``.
    """
    import torch

    from fairvlm.data.demo import DemoConfig, generate_demo, is_complete_demo
    from fairvlm.models import save_checkpoint
    from fairvlm.models.architectures import DEMO_ARCH, build_model

    data = cache / f"demo-{size_label or subjects}-{image_size}px"
    options = {"split_fractions": split_fractions} if split_fractions else {}
    config = DemoConfig(n_subjects=subjects, image_size=image_size, seed=0, **options)
    if not is_complete_demo(data, config):
        print(f"generating {subjects} demo subjects into {data} (once) ...", flush=True)
        generate_demo(data, config)
    model = cache / "demo-rn-random.safetensors"
    if not model.exists():
        torch.manual_seed(0)
        save_checkpoint(build_model(DEMO_ARCH), model, arch=DEMO_ARCH)
    return data, model
