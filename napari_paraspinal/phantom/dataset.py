"""Write phantom data sets to disk (nnU-Net-like layout) and preview montages."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.atomic import atomic_path, write_text_atomic
from ..core.writers import write_image, write_labels
from ..overlay import overlay_rgb, save_overlay_png
from .generator import LEVELS, PhantomCase, PhantomConfig, generate_phantom


def case_name(case: PhantomCase) -> str:
    """Case id such as ``phantom_L4L5_s000123`` (contrast added when not T2w)."""
    t = case.truth
    name = f"phantom_{t['level'].replace('-', '')}_s{t['seed']:06d}"
    return name if t["contrast"] == "T2w" else f"{name}_{t['contrast']}"


def write_case(case: PhantomCase, out_dir: str | os.PathLike[str]) -> Path:
    """Write one case's image, labels, fat map, truth and overlay; returns the image path."""
    out = Path(out_dir)
    name = case_name(case)
    g = case.image.geometry
    image_path = write_image(case.image, out / "images" / f"{name}.nii.gz")
    write_labels(case.labels, g, out / "labels" / f"{name}.nii.gz")
    write_image(case.image.with_data(case.fat_fraction), out / "fat" / f"{name}.nii.gz")
    write_text_atomic(out / "truth" / f"{name}.json", json.dumps(case.truth, indent=2))
    save_overlay_png(case.image, case.labels, out / "overlays" / f"{name}.png")
    return image_path


def write_dataset(out_dir: str | os.PathLike[str], n: int, seed: int = 0, level: str = "both",
                  contrast: str = "T2w", config: PhantomConfig | None = None) -> list[Path]:
    """Write ``n`` cases; case k uses seed ``seed + k``; "both" alternates the levels."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if level != "both" and level not in LEVELS:
        raise ValueError(f"level must be 'both' or one of {LEVELS}, got {level!r}")
    base = replace(config or PhantomConfig(), contrast=contrast)
    paths, index = [], []
    for k in range(n):
        lvl = LEVELS[k % 2] if level == "both" else level
        case = generate_phantom(seed + k, replace(base, level=lvl))
        paths.append(write_case(case, out_dir))
        index.append({"case": case_name(case), "level": lvl, "seed": seed + k,
                      "contrast": contrast})
    write_text_atomic(Path(out_dir) / "dataset.json",
                      json.dumps({"generator": "napari-paraspinal phantom", "cases": index},
                                 indent=2))
    return paths


def preview_grid(cases: list[PhantomCase], path: str | os.PathLike[str], columns: int = 4,
                 tile: int = 256) -> Path:
    """A PNG montage: each case's image beside the same image with its labels."""
    tiles = []
    for case in cases:
        plain = overlay_rgb(case.image, None)
        labelled = overlay_rgb(case.image, case.labels)
        pair = np.concatenate([_fit(plain, tile), _fit(labelled, tile)], axis=1)
        tiles.append(pair)
    rows = [tiles[i:i + columns] for i in range(0, len(tiles), columns)]
    blank = np.zeros_like(tiles[0])
    grid = np.concatenate([np.concatenate(r + [blank] * (columns - len(r)), axis=1)
                           for r in rows], axis=0)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return Path(path)


def _fit(rgb: np.ndarray, size: int) -> np.ndarray:
    """Letterbox an RGB picture into a size×size tile."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    small = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * scale)),
                                                    max(1, round(h * scale))), Image.BILINEAR))
    out = np.zeros((size, size, 3), np.uint8)
    y, x = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out
