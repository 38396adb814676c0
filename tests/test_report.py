"""The run report (advcam.report, scripts/report.py) and the per-step maps of the climb (--save_steps)."""
import json
import os
import re
import shutil
import subprocess
import types
from html.parser import HTMLParser

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import ROOT, flip_pairs, save_random_cam_weights
from PIL import Image
from scipy.ndimage import gaussian_filter

from advcam import obtain_cam_masking, report
from advcam.advcam import advcam_image, advcam_images, climb_fast, climb_reference, input_grad_only
from advcam.cam import fuse_scales
from advcam.errors import BadInputError, MissingInputError
from advcam.io import load_cam_npy, save_cam_npy, save_npy, save_png
from advcam.metrics import ConfusionMatrix, iou
from advcam.run_sample import record_result
from advcam.steps import eval_cam
from advcam.steps.make_advcam import fuse_steps, parse_ids
from advcam.voc12 import VOC_PALETTE
from advcam.voc12.dataloader import load_img_name_list, load_seg_label

LOG = """\
10:00:00 advcam: run_sample.py --voc12_root {voc} --train_list train.txt --make_cam_pass True --eval_cam_pass True
10:00:01 advcam: step.make_cam: 2026-12-01 10:00:01
10:00:31 advcam.cam: done
10:00:32 advcam: step.eval_cam: 2026-12-01 10:00:32
10:00:40 advcam.eval_cam: best threshold 0.20
10:01:00 advcam.make_advcam: AdvCAM settings: engine fast, adv_iter 5, AD_stepsize 0.08, AD_coeff 7
10:03:05 advcam.cam: AdvCAM (fast) done
progress bar text without a time stamp
10:03:06 advcam: run_sample.py --voc12_root {voc} --eval_sem_seg_pass True
10:03:07 advcam: step.eval_sem_seg: 2026-12-01 10:03:07
10:03:09 advcam.eval_sem_seg: mIoU
"""


def _blurred_maps(gt: np.ndarray, keys: list[int], sigma: float, rng) -> np.ndarray:
    """Per class, the blurred ground-truth mask plus noise, max-normalised: [K, H, W] float32."""
    maps = []
    for k in keys:
        m = gaussian_filter((gt == k + 1).astype(np.float64), sigma) + 0.05 * rng.random(gt.shape)
        maps.append(m / m.max())
    return np.asarray(maps, np.float32)


def make_run(tmp_path, voc: str, steps_ids=(0,), T: int = 5) -> str:
    """A synthetic run in the demo layout: CAM/AdvCAM dicts, IR labels, IRN masks, steps, results.json, a log."""
    out = tmp_path / "run"
    rng = np.random.default_rng(0)
    names = load_img_name_list(os.path.join(voc, "ImageSets/Segmentation/train.txt"))
    for i, n in enumerate(names):
        gt = load_seg_label(voc, n)
        keys = sorted(int(c) - 1 for c in np.unique(gt) if 0 < c < 255)
        H, W = gt.shape
        for folder, sigma in (("cam", 1.5), ("cam_adv_mask", 4.0)):
            hr = _blurred_maps(gt, keys, sigma, rng)
            cam = torch.from_numpy(hr[:, ::4, ::4].copy()) if keys else torch.zeros(0, (H + 3) // 4, (W + 3) // 4)
            save_cam_npy(out / folder / f"{n}.npy", keys, cam, hr)
        ir = gt.copy()
        ir[::7] = 255
        save_png(out / "ir_label" / f"{n}.png", ir)
        mask = np.roll(np.where(gt == 255, 0, gt), 2, axis=1).astype(np.uint8)
        save_png(out / "sem_seg" / f"{n}.png", mask)
        if i in steps_ids:
            h4, w4 = (H + 3) // 4, (W + 3) // 4
            base = _blurred_maps(gt, keys, 1.0, rng)[:, ::4, ::4]
            cams = np.stack([gaussian_filter(base, (0, 0.3 * t, 0.3 * t)) for t in range(T)])
            cams = cams / cams.max((2, 3), keepdims=True)
            save_npy(out / "cam_adv_mask" / "steps" / f"{n}.npy",
                     {"keys": np.asarray(keys, np.int64), "size": (H, W), "scales": (1.0,), "iters": (T,),
                      "cam": cams.astype(np.float32).reshape(T, len(keys), h4, w4)})
    res = str(out / "results.json")
    for folder in ("cam", "cam_adv_mask"):
        r = eval_cam.run(types.SimpleNamespace(voc12_root=voc, chainer_eval_set="train", cam_out_dir=str(out / folder)))
        record_result(res, f"eval_cam:{out / folder}", r)
    (out / "demo.log").write_text(LOG.format(voc=voc))
    return str(out)


@pytest.fixture
def run_dir(tmp_path, tiny_voc):
    return make_run(tmp_path, tiny_voc)


# ---------------------------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------------------------

def test_sweep_data_equal_eval_cam(run_dir, tiny_voc, tmp_path):
    folders = report.find_run_folders(run_dir)
    names = load_img_name_list(os.path.join(tiny_voc, "ImageSets/Segmentation/train.txt"))
    scores = [report.score_stage(s, tiny_voc, names) for s in folders.stages() if s.kind == "cam"]
    data = report.sweep_figure(scores, str(tmp_path / "sweep.png"))
    assert data["threshold"] == list(eval_cam.THRESHOLDS)
    for s, folder in zip(scores, ("cam", "cam_adv_mask"), strict=True):
        ref = eval_cam.run(types.SimpleNamespace(voc12_root=tiny_voc, chainer_eval_set="train",
                                                 cam_out_dir=os.path.join(run_dir, folder)))
        assert data[s.stage.name] == ref["mious"]  # exactly the numbers eval_cam prints
        assert s.miou == ref["miou"] and s.threshold == ref["threshold"]
    with open(tmp_path / "sweep.csv") as f:
        rows = [line.strip().split(",") for line in f]
    assert rows[0] == ["threshold", "CAM", "AdvCAM"] and len(rows) == 1 + len(eval_cam.THRESHOLDS)
    np.testing.assert_allclose(np.array(rows[1:], float)[:, 2], data["AdvCAM"], rtol=1e-9)
    assert Image.open(tmp_path / "sweep.png").size == (600, 360)


def test_per_class_iou_from_the_files(run_dir, tiny_voc, tmp_path):
    folders = report.find_run_folders(run_dir)
    names = load_img_name_list(os.path.join(tiny_voc, "ImageSets/Segmentation/train.txt"))
    stage = next(s for s in folders.stages() if s.name == "IRN mask")
    got = report.score_stage(stage, tiny_voc, names)
    conf = ConfusionMatrix(21)
    for n in names:
        pred = np.array(Image.open(os.path.join(run_dir, "sem_seg", n + ".png")))
        conf.update(pred, load_seg_label(tiny_voc, n))
    np.testing.assert_array_equal(got.ious, iou(conf.matrix))
    bars = report.per_class_figure([got], str(tmp_path / "iou.png"))
    present = [c for c in range(21) if not np.isnan(iou(conf.matrix)[c])]
    assert bars["classes"] == [report.VOC_SEG_CLASS_NAMES[c] for c in present]
    assert bars["classes"][0] == "background" and len(bars["classes"]) >= 2
    np.testing.assert_array_equal(bars["IRN mask"], iou(conf.matrix)[present])


def test_recorded_result_matches_by_folder(run_dir):
    folders = report.find_run_folders(run_dir)
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    adv = next(s for s in folders.stages() if s.name == "AdvCAM")
    assert report.recorded_result(results, adv) == results[f"eval_cam:{adv.folder}"]
    sem = next(s for s in folders.stages() if s.name == "IRN mask")
    assert report.recorded_result(results, sem) is None


def test_log_summary(run_dir, tiny_voc):
    logs = report.summarize_logs([os.path.join(run_dir, "demo.log")])
    assert [c.split()[0] for c in logs.commands] == ["run_sample.py", "run_sample.py"]
    assert logs.settings == ["AdvCAM settings: engine fast, adv_iter 5, AD_stepsize 0.08, AD_coeff 7"]
    assert logs.timings == [("make_cam", "10:00:01", 30), ("eval_cam", "10:00:32", 8),
                            ("make_advcam (obtain_CAM_masking.py)", "10:01:00", 125), ("eval_sem_seg", "10:03:07", 2)]
    assert report.voc_root_from_logs([os.path.join(run_dir, "demo.log")]) == tiny_voc


def test_log_summary_past_midnight(tmp_path):
    p = tmp_path / "a.log"
    p.write_text("23:59:50 advcam: step.train_irn: x\n00:00:20 advcam.irn: done\n")
    assert report.summarize_logs([str(p)]).timings == [("train_irn", "23:59:50", 30)]


# ---------------------------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------------------------

def test_colours():
    labels = np.array([[0, 1, 15], [20, 255, 8]], np.uint8)
    rgb = report.colorize_labels(labels)
    pal = np.array(VOC_PALETTE).reshape(256, 3)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    np.testing.assert_array_equal(rgb[0, 1], pal[1])
    assert tuple(rgb[0, 1]) == (128, 0, 0) and tuple(rgb[1, 1]) == (224, 224, 192)  # aeroplane, ignore
    img = np.full((4, 5, 3), 100, np.uint8)
    m = np.zeros((4, 5))
    m[1:3, 1:4] = 1.0
    ov = report.overlay_attribution(img, m)
    assert ov.dtype == np.uint8 and ov.shape == img.shape
    # alpha 0.6: the colour map's 0 (near black) darkens the image, its 1 (pale yellow) brightens it
    assert ov[0, 0].max() < 100 and ov[1, 1].min() > 120 and ov[1, 1, 0] > ov[1, 1, 2]
    with pytest.raises(BadInputError):
        report.overlay_attribution(img, np.zeros((3, 3)))


def _panel_crops(png: str, n: int) -> list[np.ndarray]:
    """The centre of each of the n panels of an image figure (panels evenly spread between 1 % and 96 %)."""
    a = np.asarray(Image.open(png).convert("RGB")).astype(float)
    H, W = a.shape[:2]
    step = 0.95 * W / n
    return [a[int(0.35 * H):int(0.6 * H), int(0.01 * W + (i + 0.3) * step):int(0.01 * W + (i + 0.7) * step)]
            for i in range(n)]


def test_image_figure(run_dir, tiny_voc, tmp_path):
    folders = report.find_run_folders(run_dir)
    name = load_img_name_list(os.path.join(tiny_voc, "ImageSets/Segmentation/train.txt"))[1]
    panels = report.image_panels(folders, name, {"CAM": 0.2, "AdvCAM": 0.3})
    assert [t.split(" (")[0] for t, _ in panels] == ["image", "CAM", "AdvCAM", "CAM seed", "AdvCAM seed",
                                                     "IR label", "IRN mask", "ground truth"]
    assert panels[3][0] == "CAM seed (bg 0.20)" and panels[4][0] == "AdvCAM seed (bg 0.30)"
    image = panels[0][1]
    for title, rgb in panels:
        assert rgb.shape == image.shape and rgb.dtype == np.uint8, title
    for _, ov in panels[1:3]:  # overlays differ from the image and are not flat
        assert np.abs(ov.astype(int) - image).mean() > 10 and ov.std() > 20
    gt = load_seg_label(tiny_voc, name)
    np.testing.assert_array_equal(panels[-1][1], np.array(VOC_PALETTE, np.uint8).reshape(256, 3)[gt])
    path = report.image_figure(folders, name, str(tmp_path / "fig.png"), {"CAM": 0.2, "AdvCAM": 0.3})
    H, W = gt.shape
    assert Image.open(path).size == (round(230 * 8), round(100 * (2.3 * H / W + 0.9)))
    crops = _panel_crops(path, 8)
    assert all(c.std() > 5 for c in crops[:3])  # image and overlays have content


def test_climbing_animation(run_dir, tiny_voc, tmp_path):
    folders = report.find_run_folders(run_dir)
    (steps_file,) = os.listdir(folders.steps_dir)
    info = report.climbing_animation(os.path.join(folders.steps_dir, steps_file), tiny_voc, str(tmp_path / "a.gif"),
                                     str(tmp_path / "a.png"))
    frames = iio.imread(tmp_path / "a.gif", index=None)
    assert info["frames"] == 5 and frames.shape[0] == 5
    K = info["classes"]
    H, W = info["size"]
    assert frames.shape[1:3] == (round(100 * (2.4 * H / W + 0.5)), round(240 * (1 + K)))
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 0.5  # the map changes over the steps
    assert os.path.getsize(tmp_path / "a.png") > 5000
    with pytest.raises(MissingInputError):
        report.load_steps(str(tmp_path / "nope.npy"))


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href")]


def test_report_html_refers_to_existing_files(run_dir, tiny_voc, tmp_path):
    folders = report.find_run_folders(run_dir)
    path = report.make_report(folders, str(tmp_path / "rep"), num_images=3)
    assert path == str(tmp_path / "rep" / "report.html")
    parser = _Refs()
    page = open(path).read()
    parser.feed(page)
    assert parser.refs and all(not re.match(r"\w+://", r) for r in parser.refs)  # relative, local
    for ref in parser.refs:
        assert os.path.isfile(tmp_path / "rep" / ref), ref
    figs = sorted(os.listdir(tmp_path / "rep" / "figures"))
    names = load_img_name_list(os.path.join(tiny_voc, "ImageSets/Segmentation/train.txt"))
    # the image with steps first, then a sample up to 3; an animation and a strip for it
    assert [f for f in figs if f.startswith("image_")] == sorted(f"image_{n}.png" for n in
                                                                 report.choose_ids(folders, names, None, 3))
    assert len([f for f in figs if f.startswith("image_")]) == 3 and f"image_{names[0]}.png" in figs
    assert {f"climb_{names[0]}.gif", f"climb_{names[0]}.png", "threshold_sweep.png", "threshold_sweep.csv",
            "per_class_iou.png"} <= set(figs)
    for f in figs:  # every figure is linked
        assert f"figures/{f}" in parser.refs, f
    # the tables: recomputed mIoU equal to results.json's, and the timings of the log
    rec = json.load(open(os.path.join(run_dir, "results.json")))[f"eval_cam:{run_dir}/cam_adv_mask"]
    assert f"<td>{100 * rec['miou']:.2f}</td><td>{rec['threshold']:.2f}</td><td>{100 * rec['miou']:.2f}</td>" in page
    assert "<td>make_advcam (obtain_CAM_masking.py)</td><td>10:01:00</td><td>125</td>" in page


def test_find_run_folders_errors(tmp_path, tiny_voc, run_dir):
    with pytest.raises(MissingInputError, match="--out"):
        report.find_run_folders(str(tmp_path / "missing"), tiny_voc)
    with pytest.raises(MissingInputError, match="--sem_seg_dir"):
        report.find_run_folders(run_dir, sem_seg_dir=str(tmp_path / "missing"))
    os.remove(os.path.join(run_dir, "demo.log"))
    with pytest.raises(MissingInputError, match="VOC root"):
        report.find_run_folders(run_dir)
    f = report.find_run_folders(run_dir, tiny_voc, seg_dir=os.path.join(run_dir, "sem_seg"))
    assert [s.name for s in f.stages()] == ["CAM", "AdvCAM", "IR label", "IRN mask", "Segmentation"]
    assert f.steps_dir == os.path.join(run_dir, "cam_adv_mask", "steps")
    shutil.copytree(f.steps_dir, tmp_path / "elsewhere")
    f = report.find_run_folders(run_dir, tiny_voc, adv_dir=os.path.join(run_dir, "cam"),
                                steps_dir=str(tmp_path / "elsewhere"))
    assert f.adv_dir == os.path.join(run_dir, "cam") and f.steps_dir == str(tmp_path / "elsewhere")
    assert report.find_run_folders(run_dir, tiny_voc, adv_dir=os.path.join(run_dir, "cam")).steps_dir is None
    with pytest.raises(MissingInputError, match="--steps_dir"):
        report.find_run_folders(run_dir, tiny_voc, steps_dir=str(tmp_path / "missing"))


@pytest.mark.slow
def test_script(run_dir, tiny_voc, tmp_path):
    out = subprocess.run(["python", os.path.join(ROOT, "scripts", "report.py"), "--out", run_dir, "--ids",
                          load_img_name_list(os.path.join(tiny_voc, "ImageSets/Segmentation/train.txt"))[2]],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == os.path.join(run_dir, "report", "report.html")
    bad = subprocess.run(["python", os.path.join(ROOT, "scripts", "report.py"), "--out", str(tmp_path / "no")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "report.py: error: --out" in bad.stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_screenshot_in_headless_chromium(run_dir, tmp_path):
    path = report.make_report(report.find_run_folders(run_dir), str(tmp_path / "rep"), num_images=2)
    shot = tmp_path / "shot.png"
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "screenshot_report.sh"), path, str(shot), "1000,1400"],
                   check=True, timeout=900, capture_output=True)  # a guard against a hung browser only
    a = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert a.shape == (1400, 1000, 3)
    # rendered: mostly white page with text, tables and the figures' colours (not a blank or error page)
    assert (a.min(2) > 240).mean() > 0.3 and a.std() > 30 and len(np.unique(a.reshape(-1, 3), axis=0)) > 500


# ---------------------------------------------------------------------------------------------------------------
# The per-step maps of the climb
# ---------------------------------------------------------------------------------------------------------------

def test_climb_fast_step_maps(trained_tiny_cam):
    torch.manual_seed(1)
    x0 = torch.randn(3, 2, 3, 48, 64)
    with input_grad_only(trained_tiny_cam):
        plain = climb_fast(trained_tiny_cam, x0, [0, 1, 2], 6, 0.08, 7.0, 0.5)
        steps: list = []
        hooked = climb_fast(trained_tiny_cam, x0, [0, 1, 2], 6, 0.08, 7.0, 0.5, step_maps=steps)
    assert torch.equal(plain, hooked)  # the default path is untouched
    assert len(steps) == 6 and torch.equal(steps[-1], plain)
    diffs = torch.stack(steps).diff(dim=0)
    assert (diffs >= 0).all() and diffs.sum() > 0  # each step adds a non-negative Grad-CAM map


def test_engines_step_maps_agree(trained_tiny_cam):
    torch.manual_seed(2)
    img = torch.randn(3, 48, 64)
    scales = (1.0, 0.5)
    pairs = flip_pairs(img, scales)
    out = {}
    for engine in ("fast", "reference"):
        steps: list = []
        cam, high = advcam_image(trained_tiny_cam, pairs, scales, [0, 2], (48, 64), adv_iter=7, engine=engine,
                                 step_maps=steps)
        plain = advcam_image(trained_tiny_cam, pairs, scales, [0, 2], (48, 64), adv_iter=7, engine=engine)
        assert torch.equal(cam, plain[0]) and torch.equal(high, plain[1])
        assert [tuple(s.shape) for s in steps] == [(7, 2, 3, 4), (5, 2, 2, 2)]  # T = 7 at 1.0, 5 at 0.5
        assert torch.equal(fuse_scales([s[-1] for s in steps], (48, 64))[0], cam)
        out[engine] = steps
    for a, b in zip(out["fast"], out["reference"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_advcam_images_step_maps_chunked(trained_tiny_cam):
    torch.manual_seed(3)
    imgs = [flip_pairs(torch.randn(3, 32, 32), (1.0,)) for _ in range(3)]
    keys = [[0, 1], [], [3]]
    a: list = []
    b: list = []
    whole = advcam_images(trained_tiny_cam, imgs, (1.0,), keys, [(32, 32)] * 3, adv_iter=4, step_maps=a)
    chunked = advcam_images(trained_tiny_cam, imgs, (1.0,), keys, [(32, 32)] * 3, adv_iter=4, step_maps=b,
                            max_batch_pixels=2 * 32 * 32)  # one climb per chunk
    assert len(a) == 3 and a[1] == [] and [tuple(s.shape) for s in a[0]] == [(4, 2, 2, 2)]
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(x, y, strict=True))
    for (c, _), (d, _) in zip(whole, chunked, strict=True):
        assert torch.equal(c, d)


def test_library_api_step_maps(trained_tiny_cam):
    from advcam import AdvCAM
    x = torch.randn(2, 3, 32, 32)
    steps: list = []
    with AdvCAM(trained_tiny_cam, "stage4", adv_iter=3) as adv:
        maps = adv(x, [0, 1], step_maps=steps)
        assert torch.equal(maps, adv(x, [0, 1]))
    assert len(steps) == 3 and torch.equal(steps[-1], maps)


def test_climb_reference_step_maps(trained_tiny_cam):
    pair = flip_pairs(torch.randn(3, 32, 32), (1.0,))[0]
    steps: list = []
    acc = climb_reference(trained_tiny_cam, pair, 1, 4, 0.08, 7.0, 0.5, step_maps=steps)
    assert len(steps) == 4 and torch.equal(steps[-1], acc)
    assert torch.equal(acc, climb_reference(trained_tiny_cam, pair, 1, 4, 0.08, 7.0, 0.5))


def test_fuse_steps_holds_the_shorter_scale():
    a = torch.rand(4, 1, 3, 3)  # T = 4 at scale 1.0
    b = torch.rand(2, 1, 2, 2)  # a scale with 2 steps keeps its last map from step 2 on
    out = fuse_steps([a, b], (1.0, 2.0), (12, 12), adv_iter=4)
    assert out.shape == (4, 1, 3, 3)
    assert torch.equal(out[3], fuse_scales([a[3], b[1]], (12, 12))[0])
    assert torch.equal(out[0], fuse_scales([a[0], b[0]], (12, 12))[0])
    empty = fuse_steps([], (1.0,), (12, 12), adv_iter=3)
    assert empty.shape == (3, 0, 3, 3)


def test_parse_ids():
    assert parse_ids(["a,b", "c"]) == ["a", "b", "c"] and parse_ids("x") == ["x"] and parse_ids(None) == []


@pytest.mark.slow
def test_save_steps_cli(tmp_path, tiny_voc):
    save_random_cam_weights(str(tmp_path / "sess" / "cam.pth"))
    names = load_img_name_list(os.path.join(tiny_voc, "ImageSets/Segmentation/train.txt"))
    args = ["--voc12_root", tiny_voc, "--train_list", "train.txt", "--num_workers", "0", "--cam_weights_name",
            str(tmp_path / "sess" / "cam.pth"), "--adv_iter", "3", "--cam_scales", "1.0"]
    stats = obtain_cam_masking.main(args + ["--cam_out_dir", str(tmp_path / "a"), "--save_steps", names[1]])
    assert stats["steps"]["images"] == 1 and stats["skipped"] == 1 and stats["images"] == len(names) - 1
    obtain_cam_masking.main(args + ["--cam_out_dir", str(tmp_path / "b")])
    for n in names:  # the steps image's map is the one the plain pass writes
        a, b = load_cam_npy(tmp_path / "a" / f"{n}.npy"), load_cam_npy(tmp_path / "b" / f"{n}.npy")
        assert torch.equal(a["cam"], b["cam"]) and np.array_equal(a["high_res"], b["high_res"])
    assert os.listdir(tmp_path / "a" / "steps") == [names[1] + ".npy"]
    st = np.load(tmp_path / "a" / "steps" / f"{names[1]}.npy", allow_pickle=True).item()
    cam = load_cam_npy(tmp_path / "a" / f"{names[1]}.npy")
    H, W = load_seg_label(tiny_voc, names[1]).shape
    assert st["cam"].shape == (3, len(cam["keys"]), (H + 3) // 4, (W + 3) // 4) and st["cam"].dtype == np.float32
    assert np.array_equal(st["cam"][-1], cam["cam"].numpy()) and tuple(st["size"]) == (H, W)
    assert st["iters"] == (3,) and np.array_equal(st["keys"], cam["keys"].numpy())
    again = obtain_cam_masking.main(args + ["--cam_out_dir", str(tmp_path / "a"), "--save_steps", names[1]])
    assert again["steps"] == {"images": 0, "skipped": 1, "seconds": again["steps"]["seconds"]}
    with pytest.raises(BadInputError, match="not in --train_list"):
        obtain_cam_masking.main(args + ["--cam_out_dir", str(tmp_path / "a"), "--save_steps", "nope"])


def test_segmentation_on_val_gets_its_own_row(run_dir, tiny_voc, tmp_path):
    """The demo's segmentation network predicts val while the seeds are scored on train: its row uses val."""
    from advcam.metrics import ConfusionMatrix, mean_iou
    val = load_img_name_list(os.path.join(tiny_voc, "ImageSets/Segmentation/val.txt"))
    conf = ConfusionMatrix(21)
    for n in val:
        gt = load_seg_label(tiny_voc, n)
        pred = np.where(gt == 255, 0, gt).astype(np.uint8)
        pred[:, :5] = 0  # a few errors, so the mIoU is not 100
        save_png(os.path.join(run_dir, "seg", f"{n}.png"), pred)
        conf.update(pred, gt)
    page = open(report.make_report(report.find_run_folders(run_dir), str(tmp_path / "rep"), num_images=1)).read()
    expected = f"{100 * mean_iou(conf.matrix):.2f}"
    assert f"<td>Segmentation (val)</td><td>{run_dir}/seg</td><td>{len(val)}/{len(val)}</td><td>{expected}</td>" in page


def test_leftover_temporary_files_are_not_outputs():
    # a killed atomic write leaves ".<id>.npy.XXXX.tmp.npy" beside the outputs; it names no image
    assert report._output_file("2007_000032.npy", ".npy")
    assert not report._output_file(".2007_000032.npy.ab12cd.tmp.npy", ".npy")
    assert not report._output_file("2007_000032.png", ".npy")


# ---------------------------------------------------------------------------------------------------------------
# A --dataset coco14 run (the toy COCO root: 81 labels, COCO's class names and image paths)
# ---------------------------------------------------------------------------------------------------------------

COCO_LOG = """\
10:00:00 advcam: python -m advcam.run_sample --dataset coco14 --coco_root {root} --chainer_eval_set {root}/train14.txt \
--eval_cam_pass True
10:00:01 advcam: step.eval_cam: 2026-12-01 10:00:01
10:00:04 advcam.eval_cam: best threshold 0.20
"""


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory):
    """A toy COCO root (6 train / 2 val images) with its masks, and a synthetic run on its train list: CAM files
    float32 in cam/, strided16 (the coco14 default) in cam_adv_mask/, IR labels, IRN masks, the steps of one
    image, results.json from eval_cam and a log of a coco14 command line. Returns (run folder, root)."""
    from advcam.datasets import COCO14
    from advcam.tools.make_coco_masks import main as make_masks
    from advcam.tools.make_toy_coco import make_toy_coco

    base = tmp_path_factory.mktemp("coco_report")
    root = str(base / "coco")
    make_toy_coco(root, n_train=6, n_val=2, seed=1)
    make_masks(["--coco_root", root, "--split", "train2014", "--workers", "1", "--no_progress"])
    data = COCO14(root)
    out = base / "run"
    rng = np.random.default_rng(0)
    names = data.read_list(os.path.join(root, "train14.txt"))
    for i, n in enumerate(names):
        gt = data.load_seg_label(n)
        keys = sorted(int(c) - 1 for c in np.unique(gt) if 0 < c < 255)
        H, W = gt.shape
        for folder, sigma, fmt in (("cam", 1.5, "float32"), ("cam_adv_mask", 4.0, "strided16")):
            hr = _blurred_maps(gt, keys, sigma, rng) if keys else np.zeros((0, H, W), np.float32)
            cam = torch.from_numpy(hr[:, ::4, ::4].copy())
            save_cam_npy(out / folder / f"{n}.npy", keys, cam, hr, cam_format=fmt)
        ir = gt.copy()
        ir[::7] = 255
        save_png(out / "ir_label" / f"{n}.png", ir)
        save_png(out / "sem_seg" / f"{n}.png", np.roll(np.where(gt == 255, 0, gt), 2, axis=1).astype(np.uint8))
        if i == 1:
            base_maps = _blurred_maps(gt, keys, 1.0, rng)[:, ::4, ::4]
            cams = np.stack([gaussian_filter(base_maps, (0, 0.3 * t, 0.3 * t)) for t in range(4)])
            cams = cams / cams.max((2, 3), keepdims=True)
            save_npy(out / "cam_adv_mask" / "steps" / f"{n}.npy",
                     {"keys": np.asarray(keys, np.int64), "size": (H, W), "scales": (1.0,), "iters": (4,),
                      "cam": cams.astype(np.float32)})
    for folder in ("cam", "cam_adv_mask"):
        r = eval_cam.run(types.SimpleNamespace(dataset="coco14", coco_root=root, cam_out_dir=str(out / folder),
                                               chainer_eval_set=os.path.join(root, "train14.txt")))
        record_result(str(out / "results.json"), f"eval_cam:{out / folder}", r)
    (out / "demo.log").write_text(COCO_LOG.format(root=root))
    return str(out), root


def test_coco_run_found_from_its_logs(coco_run, tmp_path):
    run, root = coco_run
    f = report.find_run_folders(run)
    assert f.dataset == "coco14" and f.voc12_root == root
    assert f.data.num_seg_classes == 81 and f.data.seg_class_names[80] == "toothbrush"
    assert report.dataset_from_logs(f.log_files) == ("coco14", root)
    assert report.find_run_folders(run, coco_root=root).dataset == "coco14"  # --coco_root alone means coco14
    with pytest.raises(BadInputError, match="--voc12_root goes with --dataset voc12"):
        report.find_run_folders(run, root, dataset="coco14")
    with pytest.raises(BadInputError, match="--coco_root goes with --dataset coco14"):
        report.find_run_folders(run, dataset="voc12", coco_root=root)
    with pytest.raises(MissingInputError, match="no COCO root with train2014/"):
        report.find_run_folders(run, coco_root=str(tmp_path))


def test_coco_scores_equal_eval_cam_and_a_hand_count(coco_run):
    from advcam.datasets import COCO14
    from advcam.evaluation import load_prediction

    run, root = coco_run
    folders = report.find_run_folders(run)
    data = COCO14(root)
    names = data.read_list(os.path.join(root, "train14.txt"))
    scores = {s.name: report.score_stage(s, folders.data, names) for s in folders.stages() if s.evaluated}
    for stage, folder in (("CAM", "cam"), ("AdvCAM", "cam_adv_mask")):
        ref = eval_cam.run(types.SimpleNamespace(dataset="coco14", coco_root=root, chainer_eval_set=os.path.join(
            root, "train14.txt"), cam_out_dir=os.path.join(run, folder)))
        s = scores[stage]
        assert s.thresholds == COCO14.cam_eval_thresholds and len(s.thresholds) == 41  # COCO's sweep 0.10..0.50
        assert s.mious == ref["mious"] and s.miou == ref["miou"] and s.threshold == ref["threshold"]
        assert s.confusions[0].shape == (81, 81)
    conf = ConfusionMatrix(81)
    for n in names:
        conf.update(load_prediction(os.path.join(run, "sem_seg"), n, 81), data.load_seg_label(n))
    np.testing.assert_array_equal(scores["IRN mask"].ious, iou(conf.matrix))
    present = [c for c in range(81) if not np.isnan(iou(conf.matrix)[c])]
    assert max(present) > 20  # the toy's classes reach beyond VOC's 21 labels
    bars = report.per_class_figure([scores["IRN mask"]], os.path.join(run, "iou.png"), folders.data.seg_class_names)
    assert bars["classes"] == [data.seg_class_names[c] for c in present]
    assert set(bars["classes"]) <= {"background", "person", "stop sign", "backpack", "wine glass", "dining table",
                                    "toothbrush"}


def test_coco_report(coco_run, tmp_path):
    from advcam.coco14 import image_path
    from advcam.datasets import COCO14
    from advcam.tools.report import main

    run, root = coco_run
    data = COCO14(root)
    names = data.read_list(os.path.join(root, "train14.txt"))
    folders = report.find_run_folders(run)
    panels = report.image_panels(folders, names[1], {"CAM": 0.2, "AdvCAM": 0.3})
    keys = load_cam_npy(os.path.join(run, "cam", names[1] + ".npy"))["keys"].tolist()
    assert panels[1][0] == f"CAM ({', '.join(data.class_names[k] for k in keys)})"
    assert [t.split(" (")[0] for t, _ in panels][-3:] == ["IR label", "IRN mask", "ground truth"]
    np.testing.assert_array_equal(panels[0][1], iio.imread(image_path(root, "train2014", names[1])))  # COCO's path
    gt = data.load_seg_label(names[1])
    pal = np.array(VOC_PALETTE, np.uint8).reshape(256, 3)  # coco14's palette is the VOC devkit's colour map
    np.testing.assert_array_equal(panels[-1][1], pal[gt])
    assert tuple(report.colorize_labels(np.array([[80]]), report.palette_of(data))[0, 0]) == (32, 64, 0)  # by hand

    path = main(["--out", run, "--report_dir", str(tmp_path / "rep"), "--eval_set",
                 os.path.join(root, "train14.txt"), "--num_images", "3"])
    page = open(path).read()
    assert f"COCO 2014 root <code>{root}</code>" in page and "Labels in the COCO palette" in page
    parser = _Refs()
    parser.feed(page)
    for ref in parser.refs:
        assert os.path.isfile(tmp_path / "rep" / ref), ref
    figs = set(os.listdir(tmp_path / "rep" / "figures"))
    assert {f"climb_{names[1]}.gif", f"climb_{names[1]}.png", "threshold_sweep.csv", "per_class_iou.png"} <= figs
    assert len([f for f in figs if f.startswith("image_")]) == 3
    rec = json.load(open(os.path.join(run, "results.json")))[f"eval_cam:{run}/cam_adv_mask"]
    assert f"<td>{100 * rec['miou']:.2f}</td><td>{rec['threshold']:.2f}</td><td>{100 * rec['miou']:.2f}</td>" in page
    rows = open(tmp_path / "rep" / "figures" / "threshold_sweep.csv").read().splitlines()
    assert rows[0] == "threshold,CAM,AdvCAM" and len(rows) == 1 + 41
    beyond_voc = set().union(*(np.unique(data.load_seg_label(n)).tolist() for n in names)) - {255} - set(range(21))
    assert beyond_voc  # labels past VOC's 20 classes: their per-class rows carry COCO's names
    for c in beyond_voc:
        assert f"<tr><td>{data.seg_class_names[c]}</td>" in page
