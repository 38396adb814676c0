"""advcam: AdvCAM (CVPR 2021) and the IRN pipeline, re-implemented for current PyTorch."""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
# requirements.txt pins the exact pairs this project is tested with (torch/torchvision must match each other);
# an installed library must not force them on its neighbours, so the pins become lower bounds here.
pinned = [line.split("#")[0].strip() for line in (here / "requirements.txt").read_text().splitlines()]
requirements = [r.replace("==", ">=") for r in pinned if r]

setup(
    name="advcam",
    version="0.1.0",
    description="Anti-adversarially manipulated attributions (AdvCAM) and IRN for weakly supervised segmentation",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["advcam", "advcam.*"]),
    install_requires=requirements,
    entry_points={
        "console_scripts": [
            "advcam-run-sample=advcam.run_sample:cli",
            "advcam-obtain-cam=advcam.obtain_cam_masking:cli",
        ]
    },
    license="MIT",
)
