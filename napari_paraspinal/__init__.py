"""napari-paraspinal: lumbar paraspinal muscle segmentation, fat separation and CSA export."""

__version__ = "0.1.0"
