"""The fat methods' names, apart from their code so the command line can list them without
loading scikit-learn."""

from __future__ import annotations

#: Every method, the default first: ``calibrated`` agrees best with the Dixon fat fraction
#: of the real Dixon case (``paraspinal bench fat --real``); ``kmeans`` is the paper's.
METHODS = ("calibrated", "kmeans", "gmm", "otsu", "gmm3")
#: Methods that split a muscle's pixels into two classes (the rest give each pixel a share).
TWO_CLASS_METHODS = ("kmeans", "gmm", "otsu")
DEFAULT_METHOD = METHODS[0]
PAPER_METHOD = "kmeans"
