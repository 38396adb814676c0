"""advcam: AdvCAM (CVPR 2021) and the IRN pipeline, re-implemented for current PyTorch."""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
# requirements.txt pins the exact pairs this project is tested with (torch/torchvision must match each other);
# an installed library must not force them on its neighbours, so the pins become lower bounds here.
pinned = [line.split("#")[0].strip() for line in (here / "requirements.txt").read_text().splitlines()]
requirements = [r.replace("==", ">=") for r in pinned if r]

PACKAGE_DATA = ["**/*.sh", "**/*.txt", "**/*.md", "**/*.tsv", "**/*.npy", "**/*.json"]  # relative to advcam/data/

CONSOLE_SCRIPTS = [
    "advcam-run-sample=advcam.run_sample:cli",
    "advcam-obtain-cam=advcam.obtain_cam_masking:cli",
    "advcam-check-voc=advcam.tools.check_voc:cli",
    "advcam-make-toy-voc=advcam.tools.make_toy_voc:cli",
    "advcam-demo-imagenet=advcam.tools.demo_imagenet:cli",
    "advcam-report=advcam.tools.report:cli",
    "advcam-bench=advcam.tools.bench_advcam:cli",
    "advcam-mask-quality=advcam.tools.pipelines:mask_quality",
    "advcam-seed-quality=advcam.tools.pipelines:seed_quality",
    "advcam-semi-quality=advcam.tools.pipelines:semi_quality",
    "advcam-make-coco-masks=advcam.tools.make_coco_masks:cli",
    "advcam-check-coco=advcam.tools.check_coco:cli",
    "advcam-make-toy-coco=advcam.tools.make_toy_coco:cli",
]

setup(
    name="advcam",
    version="0.1.0",
    description="Anti-adversarially manipulated attributions (AdvCAM) and IRN for weakly supervised segmentation",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["advcam", "advcam.*"]),
    # the shipped data: every file under advcam/data/ (VOC and COCO lists, labels, the shell pipelines);
    # tests/test_install.py checks that the wheel holds exactly the tree's files
    package_data={"advcam.data": PACKAGE_DATA},
    install_requires=requirements,
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    license="MIT",
)
