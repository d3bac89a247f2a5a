"""Real inputs that the shipped model's QC flags, for the tests that follow a flag around.

The shipped model was trained on every labelled real slice of ``../shared/data``, so on those
slices it passes its QC. A scan stored with anterior and posterior exchanged in its pixels
while its header says otherwise (a header that lies) is what a user may still hand it: on the
real Dixon water stack so stored, the model passes slice 4 and misses the muscles of slice
14, which its QC flags.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

FLAGGED, PASSED = 14, 4


def upside_down(source: Path, out: Path) -> Path:
    """``source`` with its pixels' second axis reversed and its header unchanged."""
    img = nib.load(source)
    data = np.asanyarray(img.dataobj)[:, ::-1, :].copy()
    out.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, img.affine, img.header), out)
    return out
