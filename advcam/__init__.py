"""advcam: AdvCAM (CVPR 2021) and the IRN pipeline, re-implemented."""

from advcam.advcam import AdvCAM, normalize_maps

__version__ = "0.1.0"
__all__ = ["AdvCAM", "normalize_maps", "__version__"]
