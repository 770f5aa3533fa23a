"""Synthetic grayscale fundus-like images for the demo data set, rendered in vectorised batches.

Each image is a sum of smooth layers on a pixel grid, all in units of the image size (so a
subject looks the same at 32 and at 512 pixels):

- a circular field of view with vignetting (intensity falls as ``1 - 0.45 (r / r_fov)^2``),
  a low-frequency texture (three random plane waves) and a darker macula;
- the optic disc: a vertically oval bright rim of radius ``R`` (``disc_radius``) with a soft
  edge, and inside it a brighter, paler cup of radius ``cdr * R``, so the cup-to-disc ratio
  (CDR) is exactly the ratio of the two radii; ``contrast`` multiplies both brightness steps;
- 4-7 curved dark vessels leaving the cup edge and thinning with distance;
- Gaussian pixel noise of standard deviation ``pixel_noise_sd`` (in units of full scale).

Values are stored like Harvard-FairVLMed's ``slo_fundus``: float32, integer-valued in [0, 255].
Everything random about one image (vessels, texture, noise) comes from that subject's
``image_seed``, so a batch renders the same pixels whatever its size or position.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

FULL_SCALE = 255.0
MAX_VESSELS = 7
_FOV_RADIUS = 0.47
_DISC_ELONGATION = 1.08  # real optic discs are vertically oval
_RIM_GAIN = 0.22
_CUP_GAIN = 0.30
_MACULA_OFFSET = 0.26  # horizontal distance disc -> macula, image-size units


def render_fundus(
    subjects: Mapping[str, np.ndarray],
    *,
    image_size: int,
    pixel_noise_sd: float,
    jitter_sd: float = 0.0,
) -> np.ndarray:
    """Render one grayscale fundus-like image per subject.

    Parameters
    ----------
    subjects
        Equal-length arrays: ``disc_x``, ``disc_y`` (disc centre, fractions of the image size),
        ``disc_radius`` (fraction of the image size), ``cdr`` (cup radius / disc radius),
        ``contrast`` (multiplier of the rim and cup brightness), ``brightness`` (background
        level, 0-1), ``eye`` (0 right eye: disc on the right; 1 left eye), ``image_seed``
        (vessels, texture, noise) and ``jitter_seed`` (0 for none; otherwise extra noise of
        ``jitter_sd`` that makes a near-identical copy of the same ``image_seed``).
    image_size
        Width and height in pixels.
    pixel_noise_sd
        Standard deviation of the additive pixel noise, as a fraction of full scale.
    jitter_sd
        Standard deviation of the copy jitter, as a fraction of full scale.

    Returns
    -------
    numpy.ndarray
        ``(n, image_size, image_size)`` float32, integer-valued in [0, 255].
    """
    size = int(image_size)
    column = {k: np.asarray(v) for k, v in subjects.items()}
    n = len(column["cdr"])
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = grid[None, None, :], grid[None, :, None]

    def per_subject(name: str) -> np.ndarray:
        return column[name].astype(np.float32)[:, None, None]

    draws = [_structure_draws(int(s), size) for s in column["image_seed"]]
    vessels = np.stack([d[0] for d in draws])  # (n, MAX_VESSELS, 4)
    waves = np.stack([d[1] for d in draws])  # (n, 3, 4)
    noise = np.stack([d[2] for d in draws])  # (n, size, size)

    r_fov = np.hypot(x - 0.5, y - 0.5)
    field = _soft_step((_FOV_RADIUS - r_fov) * size / 1.5)
    image = per_subject("brightness") * (1.0 - 0.45 * (r_fov / _FOV_RADIUS) ** 2)
    image = image + _texture(waves, x, y)

    disc_x, disc_y = per_subject("disc_x"), per_subject("disc_y")
    radius = per_subject("disc_radius")
    side = 1.0 - 2.0 * per_subject("eye")  # +1: disc right of the macula
    macula = np.hypot(x - (disc_x - side * _MACULA_OFFSET), y - disc_y - 0.02)
    image = image - 0.07 * np.exp(-((macula / 0.07) ** 2))

    dx, dy = x - disc_x, y - disc_y
    disc_distance = np.hypot(dx, dy / _DISC_ELONGATION)
    contrast, cup_radius = per_subject("contrast"), per_subject("cdr") * radius
    image = image + 0.06 * np.exp(-((disc_distance / (3.0 * radius)) ** 2))
    image = image + contrast * _RIM_GAIN * _soft_step((radius - disc_distance) / (0.08 * radius))
    image = image + contrast * _CUP_GAIN * _soft_step(
        (cup_radius - disc_distance) / (0.10 * radius)
    )

    image = image * (1.0 - _vessel_darkening(vessels, np.hypot(dx, dy), np.arctan2(dy, dx),
                                             cup_radius, size))
    image = image + float(pixel_noise_sd) * noise
    jitter = column["jitter_seed"]
    for row in np.flatnonzero(jitter):
        jitter_rng = np.random.default_rng(int(jitter[row]))
        image[row] += float(jitter_sd) * jitter_rng.standard_normal((size, size), np.float32)
    image = np.clip(image * field, 0.0, 1.0)
    return np.rint(image * FULL_SCALE).astype(np.float32).reshape(n, size, size)


def _structure_draws(seed: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vessel parameters, texture waves and a unit noise field for one image."""
    rng = np.random.default_rng(seed)
    n_vessels = rng.integers(4, MAX_VESSELS + 1)
    vessels = np.column_stack([
        rng.uniform(0.0, 2.0 * np.pi, MAX_VESSELS),  # start angle
        rng.uniform(-0.9, 0.9, MAX_VESSELS),  # curvature (radians per 0.3 image sizes)
        rng.uniform(0.008, 0.014, MAX_VESSELS),  # width at the disc
        rng.uniform(0.18, 0.32, MAX_VESSELS) * (np.arange(MAX_VESSELS) < n_vessels),  # depth
    ])
    waves = np.column_stack([
        rng.uniform(1.5, 5.0, 3),  # cycles per image
        rng.uniform(0.0, np.pi, 3),  # orientation
        rng.uniform(0.0, 2.0 * np.pi, 3),  # phase
        rng.uniform(0.01, 0.03, 3),  # amplitude
    ])
    noise = rng.standard_normal((size, size), np.float32)
    return vessels.astype(np.float32), waves.astype(np.float32), noise


def _texture(waves: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sum of plane waves ``a cos(2 pi f (x cos t + y sin t) + p)``, one set per subject."""
    total = np.zeros((waves.shape[0], y.shape[1], x.shape[2]), dtype=np.float32)
    for k in range(waves.shape[1]):
        freq, angle, phase, amp = (waves[:, k, j][:, None, None] for j in range(4))
        total += amp * np.cos(2.0 * np.pi * freq * (x * np.cos(angle) + y * np.sin(angle)) + phase)
    return total


def _vessel_darkening(
    vessels: np.ndarray, rho: np.ndarray, phi: np.ndarray, cup_radius: np.ndarray, size: int
) -> np.ndarray:
    """Fractional darkening by the darkest vessel at each pixel (0 = none).

    A vessel is the curve ``theta(rho) = a + c (rho - rho0) / 0.3`` in polar coordinates
    around the disc centre; a pixel's distance to it is ``rho |wrap(phi - theta(rho))|``, its
    profile a Gaussian whose width shrinks by half over 0.6 image sizes (never below a
    third of a pixel), faded in at the cup edge and out towards the periphery.
    """
    start = _soft_step((rho - cup_radius) / (1.0 / size + 0.2 * cup_radius))
    fade = start * np.exp(-rho / 0.45)
    thinning = 1.0 - 0.5 * np.clip(rho / 0.6, 0.0, 1.0)
    darkest = np.zeros(np.broadcast_shapes(rho.shape, cup_radius.shape), dtype=np.float32)
    for k in range(vessels.shape[1]):
        angle0, curvature, width, depth = (vessels[:, k, j][:, None, None] for j in range(4))
        theta = angle0 + curvature * (rho - cup_radius) / 0.3
        offset = np.remainder(phi - theta + np.pi, 2.0 * np.pi) - np.pi
        sd = np.maximum(width * thinning, 0.33 / size)
        np.maximum(darkest, depth * np.exp(-0.5 * (rho * offset / sd) ** 2), out=darkest)
    return darkest * fade


def _soft_step(z: np.ndarray) -> np.ndarray:
    """Logistic step ``1 / (1 + exp(-z))``, computed without overflow warnings."""
    return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)
