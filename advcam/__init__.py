"""advcam: AdvCAM (CVPR 2021) and the IRN pipeline, re-implemented."""

__version__ = "0.1.0"
