"""Shipped model bundles (safetensors + JSON card), installed as napari_paraspinal.models."""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent

#: The bundle used when no model is named.
DEFAULT_MODEL = "paraspinal-synth-real"
