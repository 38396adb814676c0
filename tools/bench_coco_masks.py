"""Measure make_coco_masks (peak memory, images/s) on a generated instances json of realistic size.

``python tools/bench_coco_masks.py [--images 20000] [--workers 1 2] [--work /tmp/bench_coco] [--seed 0]``

The json imitates instances_train2014.json: 7.31 annotations per image (604,907 / 82,783), 1.5 % of them crowd
regions as uncompressed RLE, 10 % of the objects in 2-4 polygons; object areas drawn like COCO's (41 % small
< 32^2 px, 34 % medium, 25 % large), polygons of 10-80 points (more for larger objects), images of COCO's sizes
(640x480, 480x640, 640x427, 427x640, 612x612, 500x375). No image file is needed: the converter reads only the
json. Each run is ``python -m advcam.tools.make_coco_masks --json J --out DIR --workers N`` in a fresh folder.
The projection uses CPU time (user + system, the whole process tree), since wall time on a shared machine
depends on its load: start-up (a run on a 1-image json) and the json read (timed in this process) are taken off,
the rest divided by the images gives CPU ms per image. Memory: the PSS (proportional set size, shared pages split
between processes) of the command's process tree and its anonymous part (heap, without the libraries' code),
sampled every 0.05 s, and the largest RSS of one process (from
the kernel). Projected for train2014 (82,783 images, 604,907 annotations) and val2014 (40,504 images, about
291,875 annotations at the same ratio): the json read scaled by annotations, the rest by images over the workers.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANNS_PER_IMAGE = 604_907 / 82_783
P_CROWD = 0.015
P_MULTI = 0.10
AREA_CLASSES = ((0.41, 12.0, 32.0 ** 2), (0.34, 32.0 ** 2, 96.0 ** 2), (0.25, 96.0 ** 2, 150_000.0))
SIZES = ((480, 640, 0.55), (640, 480, 0.2), (427, 640, 0.1), (640, 427, 0.05), (612, 612, 0.05),
         (375, 500, 0.05))
CATEGORY_IDS = [c for c in range(1, 91) if c not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
SPLITS = {"train2014": (82_783, 604_907), "val2014": (40_504, round(40_504 * ANNS_PER_IMAGE))}


def _star(rng, cx, cy, r, n, h, w) -> list[float]:
    ang = np.sort(rng.uniform(0, 2 * math.pi, n))
    rad = r * rng.uniform(0.6, 1.0, n)
    xs = np.clip(cx + rad * np.cos(ang), 0, w - 1)
    ys = np.clip(cy + rad * np.sin(ang), 0, h - 1)
    return np.round(np.stack([xs, ys], 1).ravel(), 2).tolist()


def _crowd_rle(rng, h, w, r) -> dict:
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    yy, xx = np.ogrid[0:h, 0:w]
    m = ((xx - cx) / r) ** 2 + ((yy - cy) / (0.6 * r)) ** 2 <= 1
    flat = m.ravel(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"size": [h, w], "counts": counts}


def make_json(path: str, n_images: int, seed: int) -> tuple[int, int]:
    """Write the benchmark json; returns (images, annotations)."""
    rng = np.random.default_rng(seed)
    sizes = np.array([(h, w) for h, w, _ in SIZES])
    size_p = np.array([p for *_, p in SIZES])
    area_p = np.array([p for p, *_ in AREA_CLASSES])
    images, anns = [], []
    for k in range(n_images):
        iid = k * 7 + 1
        h, w = (int(v) for v in sizes[rng.choice(len(SIZES), p=size_p)])
        images.append({"id": iid, "width": w, "height": h, "file_name": f"COCO_train2014_{iid:012d}.jpg"})
        for _ in range(rng.poisson(ANNS_PER_IMAGE)):
            _, lo, hi = AREA_CLASSES[rng.choice(len(AREA_CLASSES), p=area_p)]
            area = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            r = math.sqrt(area / math.pi)
            cat = CATEGORY_IDS[int(rng.integers(0, 80))]
            if rng.random() < P_CROWD:
                seg, crowd = _crowd_rle(rng, h, w, max(r, 20.0)), 1
            else:
                parts = int(rng.integers(2, 5)) if rng.random() < P_MULTI else 1
                n = int(np.clip(10 + r / 3, 10, 80))
                cx, cy = rng.uniform(0, w), rng.uniform(0, h)
                seg = [_star(rng, cx + rng.normal(0, r), cy + rng.normal(0, r), r / math.sqrt(parts), n, h, w)
                       for _ in range(parts)]
                crowd = 0
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": cat, "segmentation": seg,
                         "area": area, "bbox": [0, 0, 1, 1], "iscrowd": crowd})
    data = {"info": {}, "licenses": [], "images": images, "annotations": anns,
            "categories": [{"id": c, "name": str(c)} for c in range(1, 91)]}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)
    return len(images), len(anns)


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _pss_kib(pid: int) -> tuple[int, int]:
    """(Pss, Pss_Anon) of one process in KiB; Pss_Anon leaves out the file-backed pages (the libraries' code)."""
    got = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key = line.split(":")[0]
                if key in ("Pss", "Pss_Anon"):
                    got[key] = int(line.split()[1])
    except OSError:
        pass
    return got.get("Pss", 0), got.get("Pss_Anon", 0)


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run(json_file: str, out: str, workers: int) -> dict:
    """Run the converter once in a fresh ``out``: wall time, CPU time of the whole tree, the tool's own figures,
    peak PSS of the tree."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "advcam.tools.make_coco_masks", "--split", "train2014", "--json", json_file,
           "--out", out, "--workers", str(workers), "--no_progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cpu0, t0 = _cpu_children(), time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0, 0]

    def sample():
        while proc.poll() is None:
            both = [_pss_kib(p) for p in _tree(proc.pid)]
            peak[0] = max(peak[0], sum(b[0] for b in both))
            peak[1] = max(peak[1], sum(b[1] for b in both))
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    th.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr}")
    m = re.search(r"in ([\d.]+) s: .* in ([\d.]+) s \(([\d.]+) images/s\)", stdout)
    return {"workers": workers, "wall": wall, "cpu": _cpu_children() - cpu0, "read_s": float(m.group(1)),
            "render_s": float(m.group(2)), "images_per_s": float(m.group(3)), "peak_pss_mib": peak[0] / 1024,
            "peak_anon_mib": peak[1] / 1024,
            "max_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "line": stdout.strip()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default=20_000, type=int)
    p.add_argument("--workers", default=[1, 2], type=int, nargs="+")
    p.add_argument("--work", default="/tmp/bench_coco", help="scratch folder (json and masks)")
    p.add_argument("--seed", default=0, type=int)
    args = p.parse_args(argv)
    sys.path.insert(0, REPO)
    from advcam.coco14.instances import read_instances

    os.makedirs(args.work, exist_ok=True)
    jpath = os.path.join(args.work, f"instances_bench_{args.images}_{args.seed}.json")
    tiny = os.path.join(args.work, f"instances_bench_1_{args.seed}.json")
    t = time.perf_counter()
    for path, n in ((jpath, args.images), (tiny, 1)):
        if not os.path.isfile(path):
            make_json(path, n, args.seed)
    c0 = time.process_time()
    inst = read_instances(jpath, segmentations=True)
    read_cpu = time.process_time() - c0
    n_img, n_ann = len(inst.image_ids), inst.num_annotations
    del inst
    size = os.path.getsize(jpath)
    print(f"json {jpath}: {n_img:,} images, {n_ann:,} annotations, {size / 2**20:.0f} MiB ({size / n_ann:.0f} bytes "
          f"per annotation; ready in {time.perf_counter() - t:.0f} s); reading and checking it: {read_cpu:.1f} "
          f"CPU s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    base = run(tiny, os.path.join(args.work, "mask_tiny"), 1)
    print(f"start-up (a 1-image json): {base['cpu']:.1f} CPU s, peak PSS {base['peak_pss_mib']:.0f} MiB, of which "
          f"anonymous {base['peak_anon_mib']:.0f} MiB", flush=True)
    for w in args.workers:
        r = run(jpath, os.path.join(args.work, f"mask_w{w}"), w)
        per_image = (r["cpu"] - base["cpu"] - read_cpu) / n_img
        proj = {s: (read_cpu * a / n_ann + per_image * i / w) / 60 for s, (i, a) in SPLITS.items()}
        print(f"workers {w}: wall {r['wall']:.1f} s (json read {r['read_s']:.1f} s, masks {r['render_s']:.1f} s = "
              f"{r['images_per_s']:.1f} images/s on this loaded machine); CPU {r['cpu']:.1f} s = "
              f"{1000 * per_image:.2f} CPU ms per image after start-up and json read; peak PSS of the process tree "
              f"{r['peak_pss_mib']:.0f} MiB, of which anonymous {r['peak_anon_mib']:.0f} MiB; largest RSS of one "
              f"process {r['max_rss_mib']:.0f} MiB; projected with "
              f"{w} free core(s): train2014 {proj['train2014']:.1f} min, val2014 {proj['val2014']:.1f} min",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
