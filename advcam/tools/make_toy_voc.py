"""Write a small synthetic PASCAL VOC 2012-layout data set that poses, in miniature, the problem AdvCAM solves.

``python -m advcam.tools.make_toy_voc --out DIR [--num_train N] [--num_val M] [--size S] [--seed K] [--preview PNG]
[--body {hue,head_colours}]``

Design. Each object is a large, smooth BODY with a small, distinctive HEAD attached on its boundary, on a
cluttered background, 1-3 objects of 1-2 classes per image (5 VOC classes: aeroplane, bird, cat, dog, person):

* Body: a rotated superellipse (long axis 40-60 % of the image's long side, aspect 1.3-2.2), moderately
  saturated, filled with low-contrast stripes and blotches. Its hue and stripe period are only WEAKLY tied to
  the class (class mean + wide noise: hue N(class hue, 40 deg) with class hues 72 deg apart and far from the
  class's own head colours), so body statistics of different classes overlap heavily: the Bayes-optimal
  body-only classifier on (hue, period) is right ~70 % of the time (chance 20 %). Saturation keeps "body-ness"
  visible.
* Head: a small (diameter 12-16 % of the long side, about one stride-16 cell at 128 px), saturated,
  high-contrast pattern that is the same for every instance of a class (small jitter only): aeroplane = red
  disc with a white centre dot, bird = yellow/black bullseye, cat = green/magenta checker square, dog = blue
  triangle with an orange rim, person = cyan/black half-split disc. It overlaps the body a bit and belongs to
  the object (and its class) in the ground truth.
* Clutter: 4-10 grey/desaturated rectangles, ellipses, lines and head-sized discs with random textures,
  never a head pattern or colour, on a smooth, muted, low-frequency background. Clutter is smaller than bodies
  and unsaturated, so it neither looks like a body nor carries class evidence.
* Ground truth follows the visible pixels (later objects are drawn on top; placement keeps overlaps small and
  never hides an earlier head). VOC's ignore band (255) runs ~2 px wide along every object outline, in both
  ``SegmentationClass`` and ``SegmentationObject``.
* ``--body head_colours`` (an alternative): the body is a near-grey base under a faint checker (blend strength
  5-30 %) of the class's own two head colours, so the body holds a weak version of the head's evidence, as a cat's
  fur is seen both on its face and on its body, instead of a separate, weakly class-tied hue.

So a classifier trained on image-level labels should learn to look at the head, and plain CAM should cover the
head and little of the body: the under-coverage that AdvCAM's anti-adversarial climbing is meant to fix.
Measured (README, "Results"; classifier trained from scratch for 10 epochs, 128 px, scale-1.0 seeds on the 80
``train`` images): on the default set plain CAM sits on the heads and parts of the bodies, and climbing raises the
background with the bodies, so AdvCAM does not beat CAM (42.40 vs 46.37 mIoU); with ``--body head_colours`` it
does (49.71 vs 46.97), as in the paper.

Output (all written atomically; the same seed gives the same bytes): ``JPEGImages/<id>.jpg``,
``SegmentationClass/<id>.png``, ``SegmentationObject/<id>.png``, ``Annotations/<id>.xml``,
``ImageSets/Segmentation/{train_aug,train,val}.txt``, ``README.txt``, plus two extras that VOC lacks:
``SegmentationPart/<id>.png`` (0 background, 1 body, 2 head, 255 ignore) and ``toy_meta.json`` (each
object's geometry), to measure how much of the body vs the head a CAM covers. Ids are ``2100_000001``...
(train) and ``2101_000001``... (val), which never collide with real VOC ids. Every knob below is a module
constant; lengths are fractions of the image's long side unless named otherwise.
"""
from __future__ import annotations

import colorsys
import json
import math
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from advcam.io import atomic_path, save_png
from advcam.utils import ArgParser, program_name, run_cli
from advcam.voc12 import CAT_LIST, IGNORE_LABEL, VOC_PALETTE

# ---- data set layout ------------------------------------------------------------------------------------
CLASSES: tuple[str, ...] = ("aeroplane", "bird", "cat", "dog", "person")
TRAIN_PREFIX = "2100"
VAL_PREFIX = "2101"
JPEG_QUALITY = 95
P_LANDSCAPE = 0.7  # else portrait
SHORT_SIDE_RATIO = 0.75  # VOC's 500x375
SUPERSAMPLE = 2  # the image is drawn at this factor and box-filtered (anti-aliased edges); GT at pixel centres
PIXEL_NOISE_SD = 3.0  # Gaussian sensor noise, in 0..255 units
IGNORE_WIDTH = 2  # px; the ignore band along object outlines (even numbers: half on each side)
BORDER_MARGIN_PX = 2  # objects stay this far inside the image (every object is <truncated>0</truncated>)

# ---- objects per image ----------------------------------------------------------------------------------
NUM_OBJECTS_P = (0.45, 0.40, 0.15)  # P(1, 2, 3 objects)
P_TWO_CLASSES = 0.75  # with >= 2 objects: P(two distinct classes), else all of one class
MAX_OVERLAP_FRAC = 0.12  # overlap of two objects <= this fraction of the smaller one's area
HEAD_CLEARANCE_PX = 3  # a later object keeps this far from an earlier object's head
PLACEMENT_TRIES = 60  # random placements tried per object (bodies shrinking towards the short end)
SCENE_TRIES = 6  # whole-scene redraws when some object found no place (then it is dropped)

# ---- body -----------------------------------------------------------------------------------------------
BODY_LONG_FRAC = (0.40, 0.60)  # full long axis
BODY_ASPECT = (1.3, 2.2)
BODY_SUPERELLIPSE_P = (2.0, 3.2)  # 2 = ellipse, larger = boxier
# class mean body hues, 72 deg apart and >= 80 deg from the class's own head hues (so head colour features do not
# spill onto the body)
BODY_CLASS_HUE_DEG = {"aeroplane": 190.0, "bird": 260.0, "cat": 45.0, "dog": 115.0, "person": 330.0}
BODY_HUE_SD_DEG = 40.0  # per-object hue = class hue + N(0, this): class hues overlap heavily
BODY_SAT = (0.28, 0.55)
BODY_VAL = (0.45, 0.80)
BODY_STRIPE_PERIOD_MEAN = {"aeroplane": 0.035, "bird": 0.045, "cat": 0.055, "dog": 0.065, "person": 0.075}
BODY_STRIPE_PERIOD_SD = 0.018
BODY_STRIPE_PERIOD_RANGE = (0.025, 0.11)
BODY_STRIPE_AMP = (0.05, 0.13)  # relative brightness modulation of the stripes
BODY_BLOTCH_AMP = (0.03, 0.10)  # relative brightness modulation of smooth blotches
BODY_BLOTCH_CELLS = 3  # blotch noise grid cells across the image's long side
BODY_SHADING = 0.12  # brightness ramp across the body (a hint of 3-D)

# ---- body, --body head_colours (an alternative design) ----------------------------------------------------
# The body is a near-grey base overlaid with a checker of the class's own two head colours at a low blend strength:
# the head's colour features, faint, over the whole body (as fur is seen on a cat's face and on its body), instead
# of a separate, weakly class-tied hue.
BODY_STYLES = ("hue", "head_colours")
SHARED_BLEND = (0.05, 0.30)  # blend strength of the head colours on the body
SHARED_BASE_VAL = (0.35, 0.75)
SHARED_BASE_SAT_MAX = 0.12
SHARED_CHECK_PERIOD = (0.05, 0.09)  # checker period

# ---- head -----------------------------------------------------------------------------------------------
HEAD_DIAM_FRAC = (0.12, 0.16)
HEAD_OUTSET = 0.35  # head centre lies this many head radii outside the body outline (the rest overlaps)
HEAD_ROT_JITTER_DEG = 12.0
HEAD_COLOUR_JITTER = 10.0  # per-channel N(0, this) on each head colour, per object
HEAD_COLOURS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "aeroplane": ((215, 30, 30), (250, 250, 250)),  # red disc, white centre dot
    "bird": ((250, 215, 20), (20, 20, 20)),  # yellow/black bullseye
    "cat": ((30, 200, 60), (225, 40, 205)),  # green/magenta checker square
    "dog": ((30, 60, 225), (250, 140, 20)),  # blue triangle, orange rim
    "person": ((30, 220, 235), (15, 15, 15)),  # cyan/black half-split disc
}
HEAD_DOT_FRAC = 0.40  # aeroplane: centre-dot radius / head radius
HEAD_RING_EDGES = (0.36, 0.70)  # bird: ring radii / head radius (yellow, black, yellow)
HEAD_CHECKS = 4  # cat: checks per side
HEAD_SQUARE_HALF = 0.88  # cat: half side / head radius
HEAD_TRIANGLE_R = 1.25  # dog: circumradius / head radius
HEAD_RIM = 0.32  # dog: rim width / head radius

# ---- clutter and background -----------------------------------------------------------------------------
CLUTTER_COUNT = (4, 10)  # inclusive
CLUTTER_KIND_P = {"rect": 0.3, "ellipse": 0.25, "line": 0.2, "disc": 0.25}
CLUTTER_SIZE_FRAC = (0.08, 0.28)  # rect sides / ellipse axes (bodies are 0.40-0.60)
CLUTTER_LINE_LEN_FRAC = (0.2, 0.5)
CLUTTER_LINE_WIDTH_FRAC = (0.012, 0.03)
CLUTTER_SAT_MAX = 0.10
CLUTTER_VAL = (0.15, 0.90)
CLUTTER_TEXTURE_P = {"flat": 0.3, "speckle": 0.25, "stripes": 0.2, "gradient": 0.25}
CLUTTER_TEXTURE_AMP = (0.05, 0.15)
BG_CELLS = (2, 5)  # low-frequency background noise grid cells across the long side (inclusive)
BG_VAL = (0.30, 0.70)
BG_VAL_AMP = 0.30  # relative brightness variation of the background
BG_TINT_AMP = 0.04  # per-channel colour variation (absolute, 0..1): muted

# ---- preview --------------------------------------------------------------------------------------------
PREVIEW_COUNT = 8
PREVIEW_PAIRS_PER_ROW = 2
PREVIEW_SCALE = 2


@dataclass
class ToyObject:
    """One object: a superellipse body plus a class-specific head."""

    name: str
    cy: float
    cx: float
    a: float  # semi-axes (px), a >= b
    b: float
    theta: float  # radians
    p: float  # superellipse exponent
    hy: float
    hx: float
    hr: float
    hrot: float  # head pattern rotation (radians)
    body_rgb: tuple[float, float, float] = (0.5, 0.5, 0.5)
    hue_deg: float = 0.0
    stripe_period: float = 8.0
    stripe_angle: float = 0.0
    stripe_phase: float = 0.0
    stripe_amp: float = 0.1
    blotch_amp: float = 0.05
    head_colours: list[np.ndarray] = field(default_factory=list)
    body_style: str = "hue"  # "head_colours": stripe_amp is the blend strength, stripe_period the checker period

    def body_mask(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.theta), math.sin(self.theta)
        u = (x - self.cx) * c + (y - self.cy) * s
        v = -(x - self.cx) * s + (y - self.cy) * c
        return np.abs(u / self.a) ** self.p + np.abs(v / self.b) ** self.p <= 1.0

    def head_local(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Head coordinates in head radii, rotated by the head's jitter."""
        c, s = math.cos(self.hrot), math.sin(self.hrot)
        dx, dy = (x - self.hx) / self.hr, (y - self.hy) / self.hr
        return dx * c + dy * s, -dx * s + dy * c

    def head_mask(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        s, t = self.head_local(y, x)
        if self.name == "cat":
            return (np.abs(s) <= HEAD_SQUARE_HALF) & (np.abs(t) <= HEAD_SQUARE_HALF)
        if self.name == "dog":
            return _triangle_depth(s, t) >= 0
        return s * s + t * t <= 1.0

    def head_pattern(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """RGB (0..1) of the head pattern at every point (meaningful inside the head mask)."""
        s, t = self.head_local(y, x)
        c0, c1 = self.head_colours
        if self.name == "aeroplane":
            second = s * s + t * t <= HEAD_DOT_FRAC ** 2
        elif self.name == "bird":
            rho = np.sqrt(s * s + t * t)
            second = (rho >= HEAD_RING_EDGES[0]) & (rho < HEAD_RING_EDGES[1])
        elif self.name == "cat":
            k = 2 * HEAD_SQUARE_HALF / HEAD_CHECKS
            i = np.floor((s + HEAD_SQUARE_HALF) / k) + np.floor((t + HEAD_SQUARE_HALF) / k)
            second = i.astype(np.int64) % 2 == 1
        elif self.name == "dog":
            second = _triangle_depth(s, t) < HEAD_RIM
        else:  # person
            second = s >= 0
        return np.where(second[..., None], c1, c0)

    def head_extent(self) -> float:
        """Radius (px) of a circle about the head centre that contains the head."""
        return self.hr * max(1.0, HEAD_TRIANGLE_R, HEAD_SQUARE_HALF * math.sqrt(2))

    def body_bounds(self) -> tuple[float, float, float, float]:
        """(y0, y1, x0, x1) containing the body (its rotated bounding rectangle)."""
        c, s = abs(math.cos(self.theta)), abs(math.sin(self.theta))
        ex, ey = self.a * c + self.b * s, self.a * s + self.b * c
        return self.cy - ey, self.cy + ey, self.cx - ex, self.cx + ex

    def head_bounds(self) -> tuple[float, float, float, float]:
        """(y0, y1, x0, x1) containing the head."""
        e = self.head_extent()
        return self.hy - e, self.hy + e, self.hx - e, self.hx + e


def _triangle_depth(s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Distance inside an upward equilateral triangle of circumradius HEAD_TRIANGLE_R (negative outside)."""
    inr = HEAD_TRIANGLE_R / 2
    depth = inr - t  # bottom edge (t grows downwards)
    for ang in (math.radians(-30), math.radians(210)):  # outward normals of the two upper edges
        depth = np.minimum(depth, inr - (s * math.cos(ang) + t * math.sin(ang)))
    return depth


def _hsv(h_deg: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, s, v))


def _grid(h: int, w: int, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample positions (y [h*ss, 1], x [1, w*ss]) in native pixel units, pixel centres at i + 0.5."""
    y = (np.arange(h * ss, dtype=np.float64) + 0.5) / ss
    x = (np.arange(w * ss, dtype=np.float64) + 0.5) / ss
    return y[:, None], x[None, :]


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Low-frequency noise [h, w] (about N(0, 1) at grid nodes), smooth-step interpolated on a coarse grid."""
    if h == 0 or w == 0:
        return np.zeros((h, w))
    gh = max(1, round(cells * h / max(h, w)))
    gw = max(1, round(cells * w / max(h, w)))
    g = rng.standard_normal((gh + 1, gw + 1))
    fy = (np.arange(h) + 0.5) / h * gh
    fx = (np.arange(w) + 0.5) / w * gw
    iy, ix = np.minimum(fy.astype(int), gh - 1), np.minimum(fx.astype(int), gw - 1)
    ty, tx = fy - iy, fx - ix
    ty, tx = (ty * ty * (3 - 2 * ty))[:, None], (tx * tx * (3 - 2 * tx))[None, :]
    top = g[iy][:, ix] * (1 - tx) + g[iy][:, ix + 1] * tx
    bot = g[iy + 1][:, ix] * (1 - tx) + g[iy + 1][:, ix + 1] * tx
    return top * (1 - ty) + bot * ty


def image_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(H, W): landscape with probability P_LANDSCAPE, else portrait; the long side is ``size``."""
    short = round(SHORT_SIDE_RATIO * size)
    return (short, size) if rng.random() < P_LANDSCAPE else (size, short)


def choose_classes(rng: np.random.Generator) -> list[str]:
    """Class names of the image's objects, in drawing order (1-3 objects of 1-2 classes)."""
    n = int(rng.choice(len(NUM_OBJECTS_P), p=NUM_OBJECTS_P)) + 1
    k = 2 if n >= 2 and rng.random() < P_TWO_CLASSES else 1
    picked = [CLASSES[i] for i in rng.choice(len(CLASSES), size=k, replace=False)]
    names = picked + [picked[int(rng.integers(k))] for _ in range(n - k)]
    return [names[i] for i in rng.permutation(n)]


def sample_object(rng: np.random.Generator, name: str, h: int, w: int, shrink: float = 0.0,
                  body: str = "hue") -> ToyObject:
    """A random object of class ``name`` somewhere in an h x w image (not yet checked for fit).

    ``shrink`` in [0, 1] narrows the body-length range towards its lower end (used after failed placements).
    ``body``: one of BODY_STYLES (the head_colours style draws its own values after the common ones).
    """
    L = max(h, w)
    lo, hi = BODY_LONG_FRAC
    a = rng.uniform(lo, hi - (hi - lo) * shrink) * L / 2
    b = a / rng.uniform(*BODY_ASPECT)
    theta = rng.uniform(0, math.pi)
    p = rng.uniform(*BODY_SUPERELLIPSE_P)
    hr = rng.uniform(*HEAD_DIAM_FRAC) * L / 2
    ex = math.hypot(a * math.cos(theta), b * math.sin(theta)) + BORDER_MARGIN_PX  # ellipse half-extents
    ey = math.hypot(a * math.sin(theta), b * math.cos(theta)) + BORDER_MARGIN_PX
    cx = rng.uniform(min(ex, w / 2), max(w - ex, w / 2))
    cy = rng.uniform(min(ey, h / 2), max(h - ey, h / 2))
    phi = rng.uniform(0, 2 * math.pi)  # head direction in the body frame
    rb = (abs(math.cos(phi) / a) ** p + abs(math.sin(phi) / b) ** p) ** (-1 / p)
    d = rb + HEAD_OUTSET * hr
    lu, lv = d * math.cos(phi), d * math.sin(phi)
    hx = cx + lu * math.cos(theta) - lv * math.sin(theta)
    hy = cy + lu * math.sin(theta) + lv * math.cos(theta)
    hue = BODY_CLASS_HUE_DEG[name] + rng.normal(0, BODY_HUE_SD_DEG)
    period = float(np.clip(rng.normal(BODY_STRIPE_PERIOD_MEAN[name], BODY_STRIPE_PERIOD_SD), *BODY_STRIPE_PERIOD_RANGE))
    colours = [np.clip((np.array(c) + rng.normal(0, HEAD_COLOUR_JITTER, 3)) / 255.0, 0, 1) for c in HEAD_COLOURS[name]]
    obj = ToyObject(
        name=name, cy=cy, cx=cx, a=a, b=b, theta=theta, p=p, hy=hy, hx=hx, hr=hr,
        hrot=math.radians(rng.normal(0, HEAD_ROT_JITTER_DEG / 2)),
        body_rgb=tuple(_hsv(hue, rng.uniform(*BODY_SAT), rng.uniform(*BODY_VAL))), hue_deg=hue % 360.0,
        stripe_period=period * L, stripe_angle=rng.uniform(0, math.pi), stripe_phase=rng.uniform(0, 2 * math.pi),
        stripe_amp=rng.uniform(*BODY_STRIPE_AMP), blotch_amp=rng.uniform(*BODY_BLOTCH_AMP), head_colours=colours,
    )
    if body == "head_colours":
        obj.body_style = body
        obj.stripe_amp = rng.uniform(*SHARED_BLEND)
        val = rng.uniform(*SHARED_BASE_VAL)
        obj.body_rgb = tuple(_hsv(rng.uniform(0, 360), rng.uniform(0, SHARED_BASE_SAT_MAX), val))
        obj.hue_deg = 0.0
        obj.stripe_period = rng.uniform(*SHARED_CHECK_PERIOD) * L
    elif body != "hue":
        raise ValueError(f"--body must be one of {BODY_STYLES} (got {body!r})")
    return obj


def _window(bounds: tuple[float, float, float, float], h: int, w: int, ss: int) -> tuple[slice, slice]:
    """Sample-grid slices (at supersampling ``ss``) covering ``bounds`` = (y0, y1, x0, x1) in pixels."""
    y0, y1, x0, x1 = bounds
    ys = slice(max(0, math.floor(y0 * ss)), max(0, min(h * ss, math.ceil(y1 * ss) + 1)))
    xs = slice(max(0, math.floor(x0 * ss)), max(0, min(w * ss, math.ceil(x1 * ss) + 1)))
    return ys, xs


def object_masks(obj: ToyObject, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Full-size (body, head) masks [h, w] at pixel centres, evaluated only inside their bounding boxes."""
    y, x = _grid(h, w, 1)
    out = []
    for bounds, fn in ((obj.body_bounds(), obj.body_mask), (obj.head_bounds(), obj.head_mask)):
        m = np.zeros((h, w), bool)
        ys, xs = _window(bounds, h, w, 1)
        m[ys, xs] = fn(y[ys], x[:, xs])
        out.append(m)
    return out[0], out[1]


def _place_scene(rng: np.random.Generator, names: Sequence[str], h: int, w: int,
                 body_style: str) -> list[ToyObject]:
    """One attempt at placing ``names`` in order; objects with no valid spot are left out."""
    m = BORDER_MARGIN_PX
    inner = np.zeros((h, w), bool)
    inner[m:h - m, m:w - m] = True
    placed: list[ToyObject] = []
    masks: list[np.ndarray] = []
    head_zones: list[np.ndarray] = []
    for name in names:
        for t in range(PLACEMENT_TRIES):
            obj = sample_object(rng, name, h, w, shrink=t / PLACEMENT_TRIES, body=body_style)
            y0, y1, x0, x1 = obj.head_bounds()
            if not (m <= x0 and x1 <= w - m and m <= y0 and y1 <= h - m):
                continue
            body, head = object_masks(obj, h, w)
            mask = body | head
            if (mask & ~inner).any() or any((mask & z).any() for z in head_zones):
                continue
            area = int(mask.sum())
            if any(int((mask & o).sum()) > MAX_OVERLAP_FRAC * min(area, int(o.sum())) for o in masks):
                continue
            placed.append(obj)
            masks.append(mask)
            head_zones.append(ndimage.binary_dilation(head, iterations=HEAD_CLEARANCE_PX))
            break
    return placed


def place_objects(rng: np.random.Generator, names: Sequence[str], h: int, w: int,
                  body_style: str = "hue") -> list[ToyObject]:
    """Place objects inside the image with small overlaps, never covering an earlier head.

    Each object gets PLACEMENT_TRIES random placements (bodies shrinking towards the short end of
    BODY_LONG_FRAC); a scene where some object found no place is redrawn up to SCENE_TRIES times, after which
    the attempt with the most objects is kept (the others are dropped).
    """
    best: list[ToyObject] = []
    for _ in range(SCENE_TRIES):
        placed = _place_scene(rng, names, h, w, body_style)
        if len(placed) == len(names):
            return placed
        if len(placed) > len(best):
            best = placed
    return best


def _texture(rng: np.random.Generator, kind: str, y: np.ndarray, x: np.ndarray, L: float) -> np.ndarray:
    """Relative brightness modulation (around 0) for clutter, on the sample grid."""
    amp = rng.uniform(*CLUTTER_TEXTURE_AMP)
    shape = np.broadcast_shapes(y.shape, x.shape)
    if kind == "flat":
        return np.zeros(shape)
    if kind == "speckle":
        return amp * rng.standard_normal(shape)
    ang = rng.uniform(0, 2 * math.pi)
    proj = x * math.cos(ang) + y * math.sin(ang)
    if kind == "stripes":
        period = rng.uniform(0.03, 0.1) * L
        return amp * np.sign(np.sin(2 * math.pi * proj / period + rng.uniform(0, 2 * math.pi)))
    return amp * 2 * (proj - proj.mean()) / max(float(np.ptp(proj)), 1e-6) if proj.size else proj  # gradient


def _clutter_shape(rng: np.random.Generator, kind: str, h: int, w: int):
    """(bounds, mask function of (y, x)) of one random clutter shape of ``kind``."""
    L = max(h, w)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ang = rng.uniform(0, math.pi) if rng.random() < 0.6 else 0.0
    c, s = math.cos(ang), math.sin(ang)
    if kind in ("rect", "ellipse"):
        sa, sb = rng.uniform(*CLUTTER_SIZE_FRAC, 2) * L / 2
        ext = math.hypot(sa, sb)
    elif kind == "line":
        sa, sb = rng.uniform(*CLUTTER_LINE_LEN_FRAC) * L / 2, rng.uniform(*CLUTTER_LINE_WIDTH_FRAC) * L / 2
        ext = sa + sb
    else:  # disc of head size
        sa = sb = ext = rng.uniform(*HEAD_DIAM_FRAC) * L / 2

    def mask(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        u = (x - cx) * c + (y - cy) * s
        v = -(x - cx) * s + (y - cy) * c
        if kind == "rect":
            return (np.abs(u) <= sa) & (np.abs(v) <= sb)
        if kind == "line":
            return (np.maximum(np.abs(u) - sa, 0) ** 2 + v ** 2) <= sb ** 2
        return (u / sa) ** 2 + (v / sb) ** 2 <= 1

    return (cy - ext, cy + ext, cx - ext, cx + ext), mask


def _blend(img: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    np.copyto(img, colour, where=mask[..., None])


def _blotch(rng: np.random.Generator, wy: np.ndarray, wx: np.ndarray, H: int, W: int) -> np.ndarray:
    """Smooth body blotch noise on a window of the H x W sample grid (BODY_BLOTCH_CELLS across the long side)."""
    hh, ww = wy.shape[0], wx.shape[1]
    return smooth_noise(rng, hh, ww, BODY_BLOTCH_CELLS * 2 * max(hh, ww) / max(H, W))


def _hue_body(rng: np.random.Generator, obj: ToyObject, wy: np.ndarray, wx: np.ndarray, H: int,
              W: int) -> np.ndarray:
    """RGB of a hue body on its window: the body colour times stripes, blotches and a shading ramp."""
    proj = wx * math.cos(obj.stripe_angle) + wy * math.sin(obj.stripe_angle)
    stripes = np.sin(2 * math.pi * proj / obj.stripe_period + obj.stripe_phase)
    blotch = _blotch(rng, wy, wx, H, W)
    shade_ang = rng.uniform(0, 2 * math.pi)
    shade = ((wx - obj.cx) * math.cos(shade_ang) + (wy - obj.cy) * math.sin(shade_ang)) / obj.a
    gain = 1 + obj.stripe_amp * stripes + obj.blotch_amp * blotch + BODY_SHADING / 2 * shade
    return np.asarray(obj.body_rgb) * gain[..., None]


def _shared_body(rng: np.random.Generator, obj: ToyObject, wy: np.ndarray, wx: np.ndarray, H: int,
                 W: int) -> np.ndarray:
    """RGB of a head_colours body on its window: (1 - s) * blotched near-grey base + s * head-colour checker."""
    c, s = math.cos(obj.stripe_angle), math.sin(obj.stripe_angle)
    u, v = wx * c + wy * s, -wx * s + wy * c
    odd = (np.floor(u / obj.stripe_period) + np.floor(v / obj.stripe_period)).astype(np.int64) % 2 == 1
    checker = np.where(odd[..., None], obj.head_colours[1], obj.head_colours[0])
    base = np.asarray(obj.body_rgb) * (1 + obj.blotch_amp * _blotch(rng, wy, wx, H, W))[..., None]
    return (1 - obj.stripe_amp) * base + obj.stripe_amp * checker


def render(rng: np.random.Generator, h: int, w: int, objects: Sequence[ToyObject]) -> tuple[np.ndarray, int]:
    """Draw background, clutter and objects; return (RGB uint8 [h, w, 3], number of clutter shapes)."""
    ss = SUPERSAMPLE
    L = max(h, w)
    H, W = h * ss, w * ss
    y, x = _grid(h, w, ss)
    # background: muted low-frequency noise
    grey = rng.uniform(*BG_VAL)
    lum = grey * (1 + BG_VAL_AMP / 2 * smooth_noise(rng, H, W, rng.integers(BG_CELLS[0], BG_CELLS[1] + 1)))
    tint = np.stack([smooth_noise(rng, H, W, BG_CELLS[1]) for _ in range(3)], -1) * BG_TINT_AMP
    img = lum[..., None] + tint
    # clutter: grey/desaturated shapes with random textures
    kinds = list(CLUTTER_KIND_P)
    textures = list(CLUTTER_TEXTURE_P)
    n_clutter = int(rng.integers(CLUTTER_COUNT[0], CLUTTER_COUNT[1] + 1))
    for _ in range(n_clutter):
        kind = kinds[int(rng.choice(len(kinds), p=list(CLUTTER_KIND_P.values())))]
        bounds, mask_fn = _clutter_shape(rng, kind, h, w)
        base = _hsv(rng.uniform(0, 360), rng.uniform(0, CLUTTER_SAT_MAX), rng.uniform(*CLUTTER_VAL))
        texture = textures[int(rng.choice(len(textures), p=list(CLUTTER_TEXTURE_P.values())))]
        ys, xs = _window(bounds, h, w, ss)
        wy, wx = y[ys], x[:, xs]
        tex = _texture(rng, texture, wy, wx, L)
        _blend(img[ys, xs], mask_fn(wy, wx), base * (1 + tex)[..., None])
    # objects: textured body, then head on top
    for obj in objects:
        ys, xs = _window(obj.body_bounds(), h, w, ss)
        wy, wx = y[ys], x[:, xs]
        body_fn = _shared_body if obj.body_style == "head_colours" else _hue_body
        _blend(img[ys, xs], obj.body_mask(wy, wx), body_fn(rng, obj, wy, wx, H, W))
        ys, xs = _window(obj.head_bounds(), h, w, ss)
        wy, wx = y[ys], x[:, xs]
        _blend(img[ys, xs], obj.head_mask(wy, wx), obj.head_pattern(wy, wx))
    img = img.reshape(h, ss, w, ss, 3).mean((1, 3)) * 255.0
    img += rng.normal(0, PIXEL_NOISE_SD, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), n_clutter


def ground_truth(objects: Sequence[ToyObject], h: int, w: int) -> dict:
    """Class, instance and part maps (uint8 [h, w], with the VOC ignore band along object outlines), plus each
    object's visible box (x0, y0, x1, y1; 0-based, inclusive) and visible pixel count before the band."""
    inst = np.zeros((h, w), np.uint8)
    part = np.zeros((h, w), np.uint8)
    for k, obj in enumerate(objects):
        body, head = object_masks(obj, h, w)
        inst[body | head] = k + 1
        part[body] = 1
        part[head] = 2
    boxes, visible = [], []
    for k in range(len(objects)):
        ys, xs = np.nonzero(inst == k + 1)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))
        visible.append(int(ys.size))
    lut = np.zeros(256, np.uint8)
    for k, obj in enumerate(objects):
        lut[k + 1] = CAT_LIST.index(obj.name) + 1
    cls = lut[inst]
    band = np.zeros((h, w), bool)
    dh = inst[:, 1:] != inst[:, :-1]
    dv = inst[1:, :] != inst[:-1, :]
    band[:, 1:] |= dh
    band[:, :-1] |= dh
    band[1:, :] |= dv
    band[:-1, :] |= dv
    if IGNORE_WIDTH > 2:
        band = ndimage.binary_dilation(band, iterations=(IGNORE_WIDTH - 2) // 2)
    for m in (cls, inst, part):
        m[band] = IGNORE_LABEL
    return {"cls": cls, "inst": inst, "part": part, "boxes": boxes, "visible": visible}


def annotation_xml(name: str, h: int, w: int, objects: Sequence[ToyObject],
                   boxes: Sequence[tuple[int, int, int, int]]) -> str:
    """VOC-style annotation; ``boxes`` are 0-based (x0, y0, x1, y1) and are written 1-based, as VOC does."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = name + ".jpg"
    src = ET.SubElement(root, "source")
    ET.SubElement(src, "database").text = "advcam toy VOC (synthetic)"
    size = ET.SubElement(root, "size")
    for tag, val in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(val)
    ET.SubElement(root, "segmented").text = "1"
    for obj, box in zip(objects, boxes, strict=True):
        o = ET.SubElement(root, "object")
        ET.SubElement(o, "name").text = obj.name
        ET.SubElement(o, "pose").text = "Unspecified"
        ET.SubElement(o, "truncated").text = "0"
        ET.SubElement(o, "difficult").text = "0"
        bnd = ET.SubElement(o, "bndbox")
        for tag, val in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
            ET.SubElement(bnd, tag).text = str(val + 1)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def make_image(seed: int, split: int, index: int, size: int, body: str = "hue") -> dict:
    """Everything about one image: arrays and metadata (deterministic in seed, split, index and body style)."""
    rng = np.random.default_rng([seed, split, index])
    h, w = image_size(rng, size)
    objects = place_objects(rng, choose_classes(rng), h, w, body)
    img, n_clutter = render(rng, h, w, objects)
    return {"h": h, "w": w, "objects": objects, "img": img, "n_clutter": n_clutter, **ground_truth(objects, h, w)}


def _write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="\n") as f:
        f.write(text)


def _object_meta(obj: ToyObject, k: int, box: tuple[int, int, int, int], visible: int) -> dict:
    r3 = lambda v: round(float(v), 3)  # noqa: E731
    return {
        "name": obj.name, "class_index": CAT_LIST.index(obj.name), "instance": k + 1,
        "visible_px": visible, "box_0based_xyxy": list(box),
        "body": {"cy": r3(obj.cy), "cx": r3(obj.cx), "a": r3(obj.a), "b": r3(obj.b),
                 "theta_deg": r3(math.degrees(obj.theta)), "p": r3(obj.p), "hue_deg": r3(obj.hue_deg),
                 "rgb": [r3(c) for c in obj.body_rgb], "stripe_period_px": r3(obj.stripe_period)},
        "head": {"cy": r3(obj.hy), "cx": r3(obj.hx), "r": r3(obj.hr)},
    }


def colorize(label: np.ndarray) -> np.ndarray:
    """A label map (uint8) as RGB through the VOC palette."""
    return np.asarray(VOC_PALETTE, np.uint8).reshape(256, 3)[label]


def write_preview(path: str, items: Sequence[dict], size: int) -> None:
    """A grid of images next to their colourised class masks (PREVIEW_PAIRS_PER_ROW pairs a row)."""
    cell = size + 4
    rows = max(1, math.ceil(len(items) / PREVIEW_PAIRS_PER_ROW))
    canvas = np.full((rows * cell, PREVIEW_PAIRS_PER_ROW * 2 * cell, 3), 255, np.uint8)
    for i, it in enumerate(items):
        r, c = divmod(i, PREVIEW_PAIRS_PER_ROW)
        for j, arr in enumerate((it["img"], colorize(it["cls"]))):
            y0, x0 = r * cell + 2, (2 * c + j) * cell + 2
            canvas[y0:y0 + arr.shape[0], x0:x0 + arr.shape[1]] = arr
    canvas = canvas.repeat(PREVIEW_SCALE, 0).repeat(PREVIEW_SCALE, 1)
    save_png(path, canvas)


def make_toy_voc(out: str, num_train: int = 160, num_val: int = 40, size: int = 128, seed: int = 0,
                 preview: str | None = None, body: str = "hue") -> dict:
    """Write the toy VOC folder at ``out``; return {"train_aug", "train", "val": ids, "meta": {id: ...}}."""
    if size < 32:
        raise ValueError(f"--size must be at least 32 (got {size})")
    if body not in BODY_STYLES:
        raise ValueError(f"--body must be one of {BODY_STYLES} (got {body!r})")
    if num_train < 1 or num_val < 0:
        raise ValueError(f"need num_train >= 1 and num_val >= 0 (got {num_train}, {num_val})")
    for d in ("JPEGImages", "SegmentationClass", "SegmentationObject", "SegmentationPart", "Annotations",
              "ImageSets/Segmentation"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    splits = {"train_aug": [f"{TRAIN_PREFIX}_{i:06d}" for i in range(1, num_train + 1)],
              "val": [f"{VAL_PREFIX}_{i:06d}" for i in range(1, num_val + 1)]}
    meta: dict[str, dict] = {}
    shown: list[dict] = []
    for split_code, split in enumerate(("train_aug", "val")):
        for index, name in enumerate(splits[split], start=1):
            it = make_image(seed, split_code, index, size, body)
            with atomic_path(os.path.join(out, "JPEGImages", name + ".jpg")) as tmp:
                Image.fromarray(it["img"]).save(tmp, format="JPEG", quality=JPEG_QUALITY)
            save_png(os.path.join(out, "SegmentationClass", name + ".png"), it["cls"], VOC_PALETTE)
            save_png(os.path.join(out, "SegmentationObject", name + ".png"), it["inst"], VOC_PALETTE)
            save_png(os.path.join(out, "SegmentationPart", name + ".png"), it["part"], VOC_PALETTE)
            _write_text(os.path.join(out, "Annotations", name + ".xml"),
                        annotation_xml(name, it["h"], it["w"], it["objects"], it["boxes"]))
            meta[name] = {"height": it["h"], "width": it["w"], "clutter": it["n_clutter"],
                          "objects": [_object_meta(o, k, b, v) for k, (o, b, v) in
                                      enumerate(zip(it["objects"], it["boxes"], it["visible"], strict=True))]}
            if preview and len(shown) < PREVIEW_COUNT:
                shown.append(it)
    splits["train"] = splits["train_aug"][: (num_train + 1) // 2]
    for split in ("train_aug", "train", "val"):
        _write_text(os.path.join(out, "ImageSets", "Segmentation", split + ".txt"),
                    "".join(n + "\n" for n in splits[split]))
    _write_text(os.path.join(out, "toy_meta.json"), json.dumps(meta, indent=1, sort_keys=True) + "\n")
    _write_text(os.path.join(out, "README.txt"), _readme(num_train, num_val, size, seed, meta, body))
    stale = os.path.join(out, "cls_labels.npy")  # labels cached from an earlier set in this folder
    if os.path.exists(stale):
        os.remove(stale)
    if preview:
        write_preview(preview, shown, size)
    return {**splits, "meta": meta}


def _readme(num_train: int, num_val: int, size: int, seed: int, meta: dict, body: str = "hue") -> str:
    n_obj = [len(m["objects"]) for m in meta.values()]
    counts = {c: sum(o["name"] == c for m in meta.values() for o in m["objects"]) for c in CLASSES}
    return (
        "Synthetic toy data set in the PASCAL VOC 2012 layout -- NOT real VOC images.\n"
        f"Made by: python -m advcam.tools.make_toy_voc --num_train {num_train} --num_val {num_val} "
        f"--size {size} --seed {seed} --body {body} (advcam repository).\n\n"
        "Each object is a large, weakly class-specific textured body with a small, class-unique head;\n"
        "backgrounds carry grey clutter. Classes: " + ", ".join(CLASSES) + ".\n"
        "Ids: 2100_* = train_aug (train.txt = its first half), 2101_* = val.\n"
        "SegmentationClass / SegmentationObject: VOC palette PNGs, 255 = ignore band along outlines.\n"
        "SegmentationPart (extra): 0 background, 1 body, 2 head, 255 ignore. toy_meta.json: object geometry.\n\n"
        f"Images: {len(meta)}; objects: {sum(n_obj)}; objects per class: {counts}.\n"
        "See the module docstring of advcam/tools/make_toy_voc.py for the design.\n"
    )


def build_parser() -> ArgParser:
    """The command line of ``make_toy_voc.py`` / ``advcam-make-toy-voc``."""
    p = ArgParser(description=__doc__.split("\n\n")[0], default_prog="make_toy_voc.py")
    p.add_argument("--out", required=True, type=str, metavar="DIR", help="output folder (VOC2012 layout); required")
    p.add_argument("--num_train", default=160, type=int, help="train_aug images (train.txt is their first half)")
    p.add_argument("--num_val", default=40, type=int, help="val images")
    p.add_argument("--size", default=128, type=int, help="long side of every image (px)")
    p.add_argument("--seed", default=0, type=int, help="seed of the whole data set")
    p.add_argument("--preview", default=None, type=str, metavar="PNG",
                   help="also write a PNG grid of the first images and their ground truth here (default: none)")
    p.add_argument("--body", default="hue", choices=BODY_STYLES,
                   help="hue: bodies of a weakly class-tied hue; head_colours: near-grey bodies with a faint checker "
                        "of the class's own head colours")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    args = build_parser().parse_args(argv)
    t0 = time.time()
    res = make_toy_voc(args.out, args.num_train, args.num_val, args.size, args.seed, args.preview, args.body)
    n_obj = sum(len(m["objects"]) for m in res["meta"].values())
    print(f"wrote {len(res['meta'])} images ({n_obj} objects) to {args.out} in {time.time() - t0:.1f}s"
          + (f"; preview {args.preview}" if args.preview else ""))


def cli() -> None:
    """Console entry point: a user error is printed as one line (exit status 2)."""
    run_cli(main, program_name("make_toy_voc.py"))


if __name__ == "__main__":
    cli()
