"""Synthetic, deterministic test data: rendered bimanual 'cube transfer' frames and joint trajectories."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw


def _gradient(w: int, h: int, top, bottom, left_tint=(0, 0, 0)) -> Image.Image:
    y = np.linspace(0.0, 1.0, h)[:, None, None]
    x = np.linspace(0.0, 1.0, w)[None, :, None]
    top = np.asarray(top, np.float64)
    bottom = np.asarray(bottom, np.float64)
    tint = np.asarray(left_tint, np.float64)
    img = top * (1 - y) + bottom * y + tint * (1 - x)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def render_transfer_frame(t: float, size: int = 224, variant: int = 0) -> Image.Image:
    """One frame of a cube handed from the left arm to the right arm, t in [0, 1]."""
    s = size / 224.0
    img = _gradient(size, size, (150 + 10 * variant, 170, 200), (70, 60 + 5 * variant, 55), (25, 10, 0))
    d = ImageDraw.Draw(img)
    # table
    d.rectangle([0, int(150 * s), size, size], fill=(120, 95, 70))
    # arms: left reaches in (t 0..0.5), right reaches in (t 0.4..1)
    lx = 10 + 80 * math.sin(math.pi * min(t, 0.6) / 0.6 * 0.5) - 30 * max(0.0, t - 0.6)
    rx = 214 - 80 * math.sin(math.pi * min(max(t - 0.3, 0.0), 0.5) / 0.5 * 0.5)
    for x0, col in ((lx, (90, 90, 100)), (rx, (100, 100, 90))):
        d.rectangle([int((x0 - 12) * s), int(40 * s), int((x0 + 12) * s), int(130 * s)], fill=col)
        d.ellipse([int((x0 - 16) * s), int(120 * s), int((x0 + 16) * s), int(150 * s)], fill=(40, 40, 40))
    # cube: on the table -> lifted by the left arm -> passed to the right arm
    if t < 0.25:
        cx, cy = 60 + 40 * t / 0.25, 150
    elif t < 0.75:
        u = (t - 0.25) / 0.5
        cx, cy = lx + (rx - lx) * u, 125 - 20 * math.sin(math.pi * u)
    else:
        cx, cy = rx, 125 - 40 * (t - 0.75)
    d.rectangle([int((cx - 9) * s), int((cy - 9) * s), int((cx + 9) * s), int((cy + 9) * s)],
                fill=(210, 40, 35), outline=(120, 20, 20))
    return img


def shapes_image(w: int, h: int, seed: int) -> Image.Image:
    """Coloured shapes on a gradient (encoder golden images)."""
    rng = np.random.default_rng(seed)
    img = _gradient(w, h, rng.integers(40, 220, 3), rng.integers(20, 200, 3), rng.integers(0, 60, 3))
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        x1, y1 = x0 + int(rng.integers(20, max(21, w // 3))), y0 + int(rng.integers(20, max(21, h // 3)))
        col = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            d.rectangle([x0, y0, x1, y1], fill=col)
        elif kind == 1:
            d.ellipse([x0, y0, x1, y1], fill=col)
        else:
            d.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=col)
    d.line([(0, h - 1), (w - 1, 0)], fill=(255, 255, 255), width=3)
    return img


def joint_trajectory(length: int, seed: int, duration_scale: float = 1.0) -> np.ndarray:
    """(length, 14) smooth ALOHA-like joint angles in radians (grippers 0..1.2)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, duration_scale, length)[:, None]
    base = np.array([0.0, -0.6, 0.9, 0.0, 0.5, 0.0, 0.3] * 2)
    amp = np.array([0.4, 0.3, 0.35, 0.5, 0.3, 0.6, 0.5] * 2) * rng.uniform(0.6, 1.0, 14)
    freq = rng.uniform(0.5, 1.5, 14)
    phase = rng.uniform(0, 2 * np.pi, 14)
    q = base + amp * np.sin(2 * np.pi * freq * t + phase)
    grip = [6, 13]
    q[:, grip] = np.clip(0.6 + 0.6 * np.sin(2 * np.pi * freq[grip] * t + phase[grip]), 0.0, 1.2)
    return q.astype(np.float32)
