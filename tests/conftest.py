"""Shared fixtures: tiny CAM-shaped networks that run in milliseconds."""
import os
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

torch.set_num_threads(min(2, torch.get_num_threads()))

# A Python for the shell pipelines (PYTHON="python recorder.py"): it appends each step (python -m MODULE ARGS) to
# $WRAP_LOG as a JSON list [MODULE, *ARGS], then runs it with the extra flags $WRAP_EXTRA gives for that module
MODULE_RECORDER = """import json, os, sys
assert sys.argv[1] == "-m", sys.argv
module, args = sys.argv[2], sys.argv[3:]
with open(os.environ["WRAP_LOG"], "a") as f:
    f.write(json.dumps([module, *args]) + "\\n")
extra = json.loads(os.environ["WRAP_EXTRA"]).get(module, [])
os.execv(sys.executable, [sys.executable, "-m", module, *args, *extra])
"""


class TinyCAM(nn.Module):
    """A CAM network in miniature: conv features at stride 16 and a bias-free 1x1 head.

    It has the interface of ``advcam.nets.resnet50_cam.CAM`` (``features``, ``classifier``,
    ``class_maps``, ``forward(x, separate)``, a ``stage4`` module), so both AdvCAM engines run on it.
    """

    def __init__(self, num_classes: int = 4, width: int = 16):
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(),
                                    nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())
        self.stage4 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
                                    nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.ReLU())
        self.classifier = nn.Conv2d(4 * width, num_classes, 1, bias=False)

    def features(self, x):
        return self.stage4(self.stage1(x))

    def class_maps(self, x):
        return F.conv2d(self.features(x), self.classifier.weight)

    def forward(self, x, separate=False):
        s = self.class_maps(x)
        if separate:
            return s
        s = F.relu(s)
        return s[0] + s[1].flip(-1)

    def logits(self, x):
        return self.classifier(self.features(x).mean((2, 3), keepdim=True)).flatten(1)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (the number in use is restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def flip_pairs(img: torch.Tensor, scales) -> list[torch.Tensor]:
    """Per scale, the [2, 3, h, w] stack of ``img`` (bilinear-resized) and its mirror, as the CAM passes feed it."""
    out = []
    for s in scales:
        im = img if s == 1.0 else F.interpolate(img[None], scale_factor=s, mode="bilinear")[0]
        out.append(torch.stack([im, im.flip(-1)]))
    return out


def save_random_cam_weights(path: str) -> None:
    """Write a ResNet-50 CAM network's state dict with seeded random weights (a N(0, 0.05) head) to ``path``."""
    from advcam.nets.resnet50_cam import Net

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.classifier.weight.normal_(0, 0.05)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(net.state_dict(), path)


def square_images(n: int, size: int = 64, num_classes: int = 4, seed: int = 0):
    """Images with 1-2 coloured squares; class k = colour k. Returns (images [n,3,s,s], labels [n,C])."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.tensor([[2.0, -1, -1], [-1, 2.0, -1], [-1, -1, 2.0], [2.0, 2.0, -1]])[:num_classes]
    x = 0.3 * torch.randn(n, 3, size, size, generator=g)
    y = torch.zeros(n, num_classes)
    for i in range(n):
        for _ in range(int(torch.randint(1, 3, (1,), generator=g))):
            c = int(torch.randint(0, num_classes, (1,), generator=g))
            s = int(torch.randint(size // 4, size // 2, (1,), generator=g))
            r, q = (int(v) for v in torch.randint(0, size - s, (2,), generator=g))
            x[i, :, r:r + s, q:q + s] = colours[c][:, None, None]
            y[i, c] = 1
    return x, y


@pytest.fixture(scope="session")
def trained_tiny_cam():
    """A TinyCAM trained for a few hundred steps on coloured squares (about a second)."""
    torch.manual_seed(0)
    model = TinyCAM()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x, y = square_images(128)
    for _ in range(150):
        idx = torch.randint(0, len(x), (32,))
        loss = F.multilabel_soft_margin_loss(model.logits(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


COLOURS = {0: (230, 30, 30), 7: (30, 200, 30), 14: (40, 40, 230)}  # aeroplane, cat, person


def write_tiny_voc(root: str, n: int = 12, seed: int = 0) -> str:
    """A minimal VOC2012-layout folder of coloured squares (48x64 and 64x48), with every list file."""
    import numpy as np
    from PIL import Image

    from advcam.voc12 import CAT_LIST, VOC_PALETTE
    for d in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        name = f"2100_{i:06d}"
        ids.append(name)
        h, w = (48, 64) if i % 3 else (64, 48)
        img = rng.integers(60, 120, (h, w, 3)).astype(np.uint8)
        seg = np.zeros((h, w), np.uint8)
        objs = []
        for c in rng.choice(list(COLOURS), size=rng.integers(1, 3), replace=False):
            s = int(rng.integers(14, 24))
            y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
            img[y:y + s, x:x + s] = COLOURS[c]
            seg[y:y + s, x:x + s] = c + 1
            seg[y, x:x + s] = 255  # an ignore edge, as VOC has
            objs.append(CAT_LIST[c])
        Image.fromarray(img).save(os.path.join(root, "JPEGImages", name + ".jpg"), quality=95)
        pal = Image.fromarray(seg).convert("P")
        pal.putpalette(VOC_PALETTE)
        pal.save(os.path.join(root, "SegmentationClass", name + ".png"))
        with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
            f.write("<annotation>" + "".join(f"<object><name>{o}</name></object>" for o in objs) + "</annotation>")
    lists = {"train_aug": ids[: 2 * n // 3], "train": ids[: n // 3], "val": ids[2 * n // 3:]}
    for k, v in lists.items():
        with open(os.path.join(root, "ImageSets", "Segmentation", k + ".txt"), "w") as f:
            f.write("\n".join(v) + "\n")
    return root


@pytest.fixture
def tiny_voc(tmp_path):
    return write_tiny_voc(str(tmp_path / "voc"))


@pytest.fixture(scope="module")
def toy_coco(tmp_path_factory):
    """A toy COCO root (8 train / 4 val images of 96x128 and 128x96) with its ground-truth masks (both splits)."""
    from advcam import coco14
    from advcam.tools.make_coco_masks import main as make_masks
    from advcam.tools.make_toy_coco import make_toy_coco

    root = str(tmp_path_factory.mktemp("coco"))
    make_toy_coco(root, n_train=8, n_val=4, seed=1)
    for split in coco14.SPLITS:
        make_masks(["--coco_root", root, "--split", split, "--workers", "1", "--no_progress"])
    return root
