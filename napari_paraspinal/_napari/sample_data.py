"""napari sample data: phantom slices of both levels with their exact labels."""

from __future__ import annotations

from ..phantom import PhantomConfig, generate_phantom
from .layers import image_layer, labels_layer


def _sample(level: str, seed: int) -> list[tuple]:
    from .viewer_hooks import install_current  # label keys on the labels layer, docked or not

    install_current()
    case = generate_phantom(seed, PhantomConfig(level=level))
    image = image_layer([case.image], name=f"phantom {level}")
    return [image, labels_layer(case.labels, image[1], name=f"phantom {level} labels")]


def phantom_l4l5() -> list[tuple]:
    """A phantom slice at L4-L5 and its ground-truth labels."""
    return _sample("L4-L5", seed=7)


def phantom_l5s1() -> list[tuple]:
    """A phantom slice at L5-S1 and its ground-truth labels."""
    return _sample("L5-S1", seed=8)
