"""Phantom generator: anatomically plausible axial lumbar slices with exact labels."""

from .dataset import preview_grid, write_dataset
from .generator import LEVELS, PhantomCase, PhantomConfig, generate_phantom

__all__ = ["LEVELS", "PhantomCase", "PhantomConfig", "generate_phantom", "preview_grid",
           "write_dataset"]
