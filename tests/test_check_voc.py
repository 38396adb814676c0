"""The shipped voc12/ lists and labels, where labels come from, scripts/check_voc.py, and the real-root branch of
get_mask_quality.sh (run on the tiny VOC folder)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, save_random_cam_weights, write_tiny_voc

from advcam.errors import BadInputError
from advcam.voc12 import CAT_LIST, DATA_DIR, PACKAGED_CLS_LABELS
from advcam.voc12.check import check_voc, default_specs
from advcam.voc12.dataloader import cls_labels_source, get_cls_labels, load_cls_labels, load_img_name_list
from advcam.voc12.make_cls_labels import cached_cls_labels, cls_labels_from_table, read_label_table
from advcam.voc12.make_cls_labels import main as make_cls_labels_main

REPO = ROOT  # the clone: the shell scripts and scripts/ live here (the data in the package)
TSV = os.path.join(DATA_DIR, "cls_labels.tsv")


def _shipped(split):
    return load_img_name_list(os.path.join(DATA_DIR, split + ".txt"))


# ---- the shipped lists and labels ---------------------------------------------------------------------------

def test_shipped_lists_are_the_benchmark_splits():
    lists = {s: _shipped(s) for s in ("train", "train_aug", "val", "test")}
    assert {s: len(v) for s, v in lists.items()} == {"train": 1464, "train_aug": 10582, "val": 1449, "test": 1456}
    for names in lists.values():
        assert len(set(names)) == len(names)
        assert all(len(n) == 11 and n[4] == "_" and n.replace("_", "").isdigit() for n in names)
    assert set(lists["train"]) <= set(lists["train_aug"])
    assert not set(lists["val"]) & set(lists["train_aug"])
    assert not set(lists["test"]) & (set(lists["train_aug"]) | set(lists["val"]))


def test_shipped_cls_labels_have_the_reference_format_and_the_benchmark_counts():
    raw = np.load(PACKAGED_CLS_LABELS, allow_pickle=True)
    assert raw.shape == () and raw.dtype == object
    table = raw.item()
    train_aug, val = _shipped("train_aug"), _shipped("val")
    assert list(table) == [int(n.replace("_", "")) for n in train_aug + val]  # train_aug first, as the reference
    assert all(type(k) is np.int32 for k in table)
    assert all(v.dtype == np.float32 and v.shape == (20,) and set(np.unique(v)) <= {0, 1} for v in table.values())
    labels = load_cls_labels(PACKAGED_CLS_LABELS)
    aug = np.stack([labels[n] for n in train_aug])
    # the benchmark's positive counts over train_aug (aeroplane ... tvmonitor) and labels per image
    assert aug.sum(0).astype(int).tolist() == [590, 504, 705, 468, 714, 393, 1150, 1005, 1228, 267, 613, 1188, 445,
                                               492, 4155, 522, 300, 649, 503, 567]
    per_image = aug.sum(1)
    assert per_image.min() == 1 and per_image.max() == 6 and round(float(per_image.mean()), 2) == 1.56


def test_shipped_npy_is_what_the_builder_makes_from_the_table(tmp_path):
    out = tmp_path / "cls_labels.npy"
    make_cls_labels_main(["--from_tsv", TSV, "--train_list", os.path.join(DATA_DIR, "train_aug.txt"),
                          "--val_list", os.path.join(DATA_DIR, "val.txt"), "--out", str(out)])
    built, shipped = np.load(out, allow_pickle=True).item(), np.load(PACKAGED_CLS_LABELS, allow_pickle=True).item()
    assert list(built) == list(shipped) and all(type(k) is np.int32 for k in built)
    assert all(np.array_equal(built[k], shipped[k]) and built[k].dtype == np.float32 for k in built)


def test_label_table_errors_name_the_line(tmp_path):
    bad = tmp_path / "t.tsv"
    bad.write_text("2007_000032\t0 14\n2007_000039\t20\n")
    with pytest.raises(BadInputError, match=r"t\.tsv:2"):
        read_label_table(str(bad))
    bad.write_text("2007_000032\t0 14\n")
    with pytest.raises(BadInputError, match="2007_000039"):
        cls_labels_from_table(str(bad), ["2007_000032", "2007_000039"])


def _root_with_real_ids(tmp_path, with_xml, names, wrong=False):
    """A VOC-layout folder for real VOC ids; with_xml writes Annotations from the shipped table (or wrong ones)."""
    from PIL import Image
    root = tmp_path / "VOC"
    for d in ("JPEGImages", "ImageSets/Segmentation") + (("Annotations",) if with_xml else ()):
        (root / d).mkdir(parents=True, exist_ok=True)
    table = read_label_table(TSV)
    for n in names:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "JPEGImages" / f"{n}.jpg")
        if with_xml:
            classes = [CAT_LIST[i] for i in np.flatnonzero(table[n])] if not wrong else ["sofa"]
            objs = "".join(f"<object><name>{c}</name><difficult>0</difficult></object>" for c in classes)
            (root / "Annotations" / f"{n}.xml").write_text(f"<annotation>{objs}</annotation>")
    return str(root)


def test_packaged_labels_load_as_labels_built_from_xml(tmp_path):
    """The same ids give the same [N, 20] labels through get_cls_labels, from XML or from voc12/cls_labels.npy."""
    names = _shipped("train")[:5] + _shipped("val")[:3]
    from_xml_root = _root_with_real_ids(tmp_path / "a", True, names)
    no_xml_root = _root_with_real_ids(tmp_path / "b", False, names)
    assert cls_labels_source(from_xml_root, names)[0] == "annotations"
    assert cls_labels_source(no_xml_root, names) == ("packaged", PACKAGED_CLS_LABELS)
    from_xml = get_cls_labels(from_xml_root, names)
    assert cls_labels_source(from_xml_root, names) == ("cached", os.path.join(from_xml_root, "cls_labels.npy"))
    packaged = get_cls_labels(no_xml_root, names)
    assert from_xml.dtype == packaged.dtype == np.float32 and np.array_equal(from_xml, packaged)
    assert not os.path.exists(os.path.join(no_xml_root, "cls_labels.npy"))  # nothing written for the packaged
    # --cls_labels with the shipped file is the reference's way: the same again
    assert np.array_equal(get_cls_labels(from_xml_root, names, PACKAGED_CLS_LABELS), packaged)


def test_packaged_labels_never_shadow_a_roots_own(tmp_path, tiny_voc):
    names = _shipped("train")[:2]
    root = _root_with_real_ids(tmp_path, True, names, wrong=True)  # a root whose XML says "sofa" for both
    assert get_cls_labels(root, names).argmax(1).tolist() == [CAT_LIST.index("sofa")] * 2
    # the toy ids are in no VOC list: a root with Annotations builds them, one without names the id and the file
    toy = load_img_name_list("train.txt", tiny_voc)
    assert get_cls_labels(tiny_voc, toy).shape == (len(toy), 20)
    os.remove(os.path.join(tiny_voc, "cls_labels.npy"))
    os.rename(os.path.join(tiny_voc, "Annotations"), os.path.join(tiny_voc, "Annotations.off"))
    with pytest.raises(BadInputError, match=rf"image {toy[0]} has no label in .*voc12/cls_labels\.npy.*--cls_labels"):
        get_cls_labels(tiny_voc, toy)


# ---- check_voc --------------------------------------------------------------------------------------------

def _lists(root):
    return {k: os.path.join(root, "ImageSets", "Segmentation", k + ".txt") for k in ("train_aug", "train", "val")}


def _specs(root):
    ls = _lists(root)
    return default_specs(root, ls["train_aug"], ls["train"], ls["val"])


def _script(*args, env=None):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", "check_voc.py"), *args], cwd=REPO,
                          capture_output=True, text=True, env=env)


def test_check_passes_on_a_complete_root(tiny_voc):
    report = check_voc(tiny_voc, _specs(tiny_voc))
    assert report.ok and report.problems == []
    counts = {r.spec.flag: (len(r.names), r.present) for r in report.lists}
    assert counts == {"--train_list": (8, {"JPEG": 8, "label": 8}),
                      "--train_seg_list": (4, {"JPEG": 4, "PNG": 4, "label": 4}),
                      "--val_list": (4, {"JPEG": 4, "PNG": 4, "label": 4}),
                      "--chainer_eval_set": (4, {"PNG": 4})}
    assert not os.path.exists(os.path.join(tiny_voc, "cls_labels.npy"))  # a check writes nothing
    ls = _lists(tiny_voc)
    res = _script("--voc12_root", tiny_voc, "--train_list", ls["train_aug"], "--train_seg_list", ls["train"],
                  "--val_list", ls["val"])
    assert res.returncode == 0, res.stderr
    assert "JPEG 8/8, label 8/8" in res.stdout and "check_voc: OK" in res.stdout


def test_check_names_a_missing_jpeg_png_and_label(tiny_voc):
    ids = {k: open(p).read().split() for k, p in _lists(tiny_voc).items()}
    os.remove(os.path.join(tiny_voc, "JPEGImages", ids["train_aug"][-1] + ".jpg"))  # in train_aug only
    os.remove(os.path.join(tiny_voc, "SegmentationClass", ids["val"][0] + ".png"))
    os.remove(os.path.join(tiny_voc, "Annotations", ids["train"][1] + ".xml"))  # in train and train_aug
    report = check_voc(tiny_voc, _specs(tiny_voc))
    assert not report.ok
    found = [(p.kind, p.what, p.lists) for p in report.problems]
    assert found == [
        ("JPEG", os.path.join(tiny_voc, "JPEGImages", ids["train_aug"][-1] + ".jpg"), ["--train_list"]),
        ("label", os.path.join(tiny_voc, "Annotations", ids["train"][1] + ".xml"),
         ["--train_list", "--train_seg_list"]),
        ("PNG", os.path.join(tiny_voc, "SegmentationClass", ids["val"][0] + ".png"), ["--val_list"]),
    ]
    assert {r.spec.flag: r.present for r in report.lists}["--train_list"] == {"JPEG": 7, "label": 7}
    ls = _lists(tiny_voc)
    res = _script("--voc12_root", tiny_voc, "--train_list", ls["train_aug"], "--train_seg_list", ls["train"],
                  "--val_list", ls["val"])
    assert res.returncode == 1
    err = res.stderr.splitlines()
    assert err[0] == f"missing JPEG: {found[0][1]} (--train_list)"
    assert err[1].startswith(f"missing label: {found[1][1]}") and err[2].startswith(f"missing PNG: {found[2][1]}")
    assert err[-1].startswith(f"check_voc: {tiny_voc} is incomplete (1 JPEG, 1 PNG, 1 label missing): put every")


def test_check_names_labels_missing_from_a_labels_file(tmp_path, tiny_voc):
    ids = open(_lists(tiny_voc)["val"]).read().split()
    labels = load_cls_labels(cached_cls_labels(tiny_voc, ids))  # the toy's own labels, from its XML
    del labels[ids[2]]
    np.save(tmp_path / "given.npy", labels)
    report = check_voc(tiny_voc, default_specs(tiny_voc, None, None, _lists(tiny_voc)["val"], None, None),
                       cls_labels=str(tmp_path / "given.npy"))
    assert [(p.kind, p.what) for p in report.problems] == [("label", f"{ids[2]} in {tmp_path / 'given.npy'}")]
    assert report.lists[0].label_source == ("given", str(tmp_path / "given.npy"))
    # the packaged file, for a root without Annotations: the toy ids are not in it
    os.remove(os.path.join(tiny_voc, "cls_labels.npy"))
    os.rename(os.path.join(tiny_voc, "Annotations"), os.path.join(tiny_voc, "Annotations.off"))
    report = check_voc(tiny_voc, default_specs(tiny_voc, None, None, _lists(tiny_voc)["val"], None, None))
    assert [p.what for p in report.problems] == [f"{n} in {PACKAGED_CLS_LABELS}" for n in ids]
    assert "packaged VOC 2012 labels" in report.summary()


def test_check_script_usage_and_missing_lists(tmp_path, tiny_voc):
    res = _script("--voc12_root", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "nowhere is not a folder" in res.stderr
    res = _script("--voc12_root", tiny_voc, "--adv_iter", "3")
    assert res.returncode == 2 and "unrecognized arguments: --adv_iter 3" in res.stderr
    # the shipped lists on the toy root: every id is missing; with a pipeline flag passed through
    res = _script("--voc12_root", tiny_voc, "--val_list", str(tmp_path / "none.txt"), "--ignore_other_flags",
                  "--adv_iter", "3", "--device", "cpu")
    assert res.returncode == 1
    assert "--train_list" in res.stdout and "10582 ids, JPEG 0/10582" in res.stdout
    err = res.stderr.splitlines()
    assert err[0].startswith(f"missing list: {tmp_path / 'none.txt'} (image list") and err[0].endswith("(--val_list)")
    assert err[1] == f"missing JPEG: {os.path.join(tiny_voc, 'JPEGImages', _shipped('train_aug')[0])}.jpg " \
                     "(--train_list, --train_seg_list)"
    assert len(err) == 12 and err[10].startswith("... and ")
    assert err[11].startswith(f"check_voc: {tiny_voc} is incomplete (1 list, 10582 JPEG, 1464 PNG, 10582 label")


# ---- get_mask_quality.sh / get_seed_quality.sh on a real root -------------------------------------------------

WRAPPER = """import json, os, sys
if sys.argv[1] == "-m":  # python -m MODULE ARGS: recorded under the module's name
    name, run, args = sys.argv[2], ["-m", sys.argv[2]], sys.argv[3:]
else:
    name, run, args = os.path.basename(sys.argv[1]), [sys.argv[1]], sys.argv[2:]
with open(os.environ["WRAP_LOG"], "a") as f:
    f.write(json.dumps([name, *args]) + "\\n")
extra = json.loads(os.environ["WRAP_EXTRA"]).get(name, [])
os.execv(sys.executable, [sys.executable, *run, *args, *extra])
"""
# the Python steps of the scripts, as they run them (python -m ...): the flag check, the root's check, the passes
FLAGS, CHECK, OBTAIN = "advcam.tools.pipelines", "advcam.tools.check_voc", "advcam.obtain_cam_masking"
SAMPLE, TABLE = "advcam.run_sample", "advcam.tools.results_table"


def _run_script(tmp_path, script, root, extra, args=(), launch=None, threads="2", repo=REPO):
    """Run ``bash <repo>/script`` on ``root`` with PYTHON = a wrapper that records each Python command line as the
    script gives it, then runs it for real with ``extra[<script name>]`` appended (small settings for the tiny root).

    ``launch``: launcher arguments for the passes (LAUNCH = python LAUNCH wrapper), e.g. torchrun's module.
    ``repo``: the clone to run the script from (:func:`_private_clone` for a run whose writes are checked)."""
    wrap = tmp_path / "wrap.py"
    wrap.write_text(WRAPPER)
    log = tmp_path / "calls.jsonl"
    env = dict(os.environ, PYTHON=f"{sys.executable} {wrap}", WRAP_LOG=str(log), WRAP_EXTRA=json.dumps(extra),
               OUT=str(tmp_path / "out"), OMP_NUM_THREADS=threads)
    if launch:
        env["LAUNCH"] = f"{sys.executable} {launch} {wrap}"
    env.pop("VOC12_ROOT", None)
    res = subprocess.run(["bash", os.path.join(repo, script), "--voc12_root", root, *args], cwd=str(tmp_path),
                         capture_output=True, text=True, env=env)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return res, calls


# what a clone holds besides the code: never copied, so a private clone starts without any pipeline output
_NOT_CODE = shutil.ignore_patterns(".git", "tests", "docs", "result", "sess", "demo_out", "demo_dist", "toy_voc",
                                   "*.log", "__pycache__", "*.egg-info", "build", "dist", ".venv", ".*_cache")


def _private_clone(tmp_path) -> str:
    """A copy of the clone's code (scripts, passes, package with its data) that only this test runs from.

    Whatever a run would leave in the clone it runs from appears in this copy; the shared clone could not tell:
    another job (a second test run, the demo) may write there meanwhile."""
    dst = str(tmp_path / "clone")
    shutil.copytree(REPO, dst, ignore=_NOT_CODE)
    return dst


def _stray_outputs(clone: str, cwd: str) -> list[str]:
    """Pipeline outputs (result/, sess/, *.log) outside $OUT: in the clone the script ran from, beside its packaged
    scripts (advcam/data/), or in the folder it ran in (both private to the test: no other job writes there)."""
    found = []
    for folder in (clone, os.path.join(clone, "advcam", "data"), cwd):
        found += [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".log") or f in ("result", "sess")]
    return found


def test_real_root_branch_stops_at_the_check(tmp_path, tiny_voc):
    """The shipped lists name real VOC ids: on the toy root the check fails first and nothing else runs."""
    res, calls = _run_script(tmp_path, "get_mask_quality.sh", tiny_voc, {}, ["--device", "cpu"])
    assert res.returncode == 1
    assert [c[0] for c in calls] == [FLAGS, CHECK]
    assert calls[0][1:] == ["check", "mask", "--device", "cpu"]
    assert calls[1][1:] == ["--voc12_root", tiny_voc, "--ignore_other_flags", "--device", "cpu"]
    assert "missing JPEG:" in res.stdout and "is incomplete" in open(tmp_path / "out" / "check_voc.log").read()
    res, calls = _run_script(tmp_path, "get_seed_quality.sh", tiny_voc, {})
    assert res.returncode == 1 and [c[0] for c in calls][-1] == CHECK
    assert "--val_list" not in res.stdout and "1464 ids, JPEG 0/1464" in res.stdout


@pytest.mark.slow
def test_real_root_branch_writes_everything_under_out(tmp_path):
    """The whole real-root branch, for real, on 6 tiny images: only the image lists and sizes differ."""
    clone = _private_clone(tmp_path)
    tiny_voc = write_tiny_voc(str(tmp_path / "voc"), n=6)
    cam = tmp_path / "cam.pth"
    save_random_cam_weights(str(cam))
    ls = _lists(tiny_voc)
    small = ["--cam_weights_name", str(cam), "--cam_scales", "1.0", "--num_workers", "1"]
    extra = {
        CHECK: ["--train_list", ls["train_aug"], "--train_seg_list", ls["train"], "--val_list", ls["val"]],
        OBTAIN: small + ["--train_list", ls["train_aug"], "--adv_iter", "1"],
        SAMPLE: small + ["--train_list", ls["train_aug"], "--infer_list", ls["train"], "--val_list",
                                  ls["val"], "--irn_crop_size", "80", "--irn_batch_size", "4", "--irn_num_epoches",
                                  "1", "--no_pretrained", "True", "--exp_times", "2"],
    }
    res, calls = _run_script(tmp_path, "get_mask_quality.sh", tiny_voc, extra, ["--device", "cpu"], repo=clone)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = str(tmp_path / "out")
    # the check first; the reference's lists; every output flag points under $OUT
    assert [c[0] for c in calls] == [FLAGS, CHECK, OBTAIN, SAMPLE, TABLE]
    obtain, sample = calls[2], calls[3]
    assert obtain[obtain.index("--train_list") + 1] == "voc12/train_aug.txt"
    for call in (obtain, sample):
        for flag in ("--cam_out_dir", "--ir_label_out_dir", "--sem_seg_out_dir", "--ins_seg_out_dir",
                     "--irn_weights_name", "--log_name", "--results_json"):
            if flag in call:
                assert call[call.index(flag) + 1].startswith(out + "/"), (flag, call)
    assert {"--ir_label_out_dir", "--sem_seg_out_dir", "--irn_weights_name", "--log_name"} <= set(sample)
    assert calls[4][1:] == [f"{out}/results.json", f"AdvCAM seeds=eval_cam:{out}/cam_adv_mask",
                            f"IRN masks=eval_sem_seg:{out}/sem_seg"]
    # the outputs are there, and the table shows both rows from them
    train_aug, train = (open(ls[k]).read().split() for k in ("train_aug", "train"))
    assert sorted(os.listdir(f"{out}/cam_adv_mask")) == sorted(n + ".npy" for n in train_aug)
    assert {n + ".png" for n in train_aug} <= set(os.listdir(f"{out}/ir_label"))
    assert {n + ".png" for n in train} <= set(os.listdir(f"{out}/sem_seg"))
    assert os.path.isfile(f"{out}/sess/res50_irn.pth")
    for log in ("check_voc.log", "obtain_cam_masking.log", "sample_train_eval.log"):
        assert os.path.getsize(f"{out}/{log}") > 0, log
    results = json.load(open(f"{out}/results.json"))
    assert set(results) == {f"eval_cam:{out}/cam_adv_mask", f"eval_sem_seg:{out}/sem_seg"}
    rows = {line.split("  ")[0]: line.split()[-1] for line in res.stdout.splitlines()
            if line.startswith(("AdvCAM seeds", "IRN masks"))}
    assert rows == {"AdvCAM seeds": f"{100 * results[f'eval_cam:{out}/cam_adv_mask']['miou']:.2f}",
                    "IRN masks": f"{100 * results[f'eval_sem_seg:{out}/sem_seg']['miou']:.2f}"}
    # and nothing in the repository's own output folders
    assert _stray_outputs(clone, str(tmp_path)) == []


def _seed_quality_inputs(tmp_path, num_workers: int):
    """A tiny VOC root of 6 images, random CAM weights, and get_seed_quality.sh's extra flags per script (its train
    list, the weights, one scale, one climbing step): (root, lists, extra)."""
    tiny_voc = write_tiny_voc(str(tmp_path / "voc"), n=6)
    save_random_cam_weights(str(tmp_path / "cam.pth"))
    ls = _lists(tiny_voc)
    extra = {CHECK: ["--train_list", ls["train"], "--train_seg_list", ls["train"]],
             OBTAIN: ["--train_list", ls["train"], "--cam_weights_name", str(tmp_path / "cam.pth"),
                      "--cam_scales", "1.0", "--num_workers", str(num_workers), "--adv_iter", "1"]}
    return tiny_voc, ls, extra


@pytest.mark.slow
def test_seed_quality_writes_everything_under_out(tmp_path):
    clone = _private_clone(tmp_path)
    tiny_voc, ls, extra = _seed_quality_inputs(tmp_path, num_workers=1)
    res, calls = _run_script(tmp_path, "get_seed_quality.sh", tiny_voc, extra, ["--device", "cpu"], repo=clone)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = str(tmp_path / "out")
    assert [c[0] for c in calls] == [FLAGS, CHECK, OBTAIN, SAMPLE, TABLE]
    assert calls[2][calls[2].index("--train_list") + 1] == "voc12/train.txt"
    assert sorted(os.listdir(f"{out}/cam_adv_mask")) == sorted(n + ".npy" for n in open(ls["train"]).read().split())
    for log in ("check_voc.log", "obtain_cam_masking.log", "sample_train_eval.log"):
        assert os.path.getsize(f"{out}/{log}") > 0, log
    miou = json.load(open(f"{out}/results.json"))[f"eval_cam:{out}/cam_adv_mask"]["miou"]
    assert [line.split()[-1] for line in res.stdout.splitlines() if line.startswith("AdvCAM seeds")] == \
        [f"{100 * miou:.2f}"]
    assert _stray_outputs(clone, str(tmp_path)) == []


@pytest.mark.slow
def test_seed_quality_under_torchrun_via_launch(tmp_path):
    """LAUNCH="torchrun ..." runs the passes as a 2-rank job; the seeds and their mIoU are those of one process."""
    tiny_voc, _, extra = _seed_quality_inputs(tmp_path, num_workers=0)
    outs = {}
    for name, launch in (("one", None), ("two", "-m torch.distributed.run --standalone --nproc_per_node 2")):
        (tmp_path / name).mkdir()
        res, _ = _run_script(tmp_path / name, "get_seed_quality.sh", tiny_voc, extra, ["--device", "cpu"],
                             launch=launch, threads="1")
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        outs[name] = tmp_path / name / "out"
    one, two = outs["one"], outs["two"]
    assert "torchrun job of 2 ranks" in open(two / "obtain_cam_masking.log").read()
    names = sorted(os.listdir(one / "cam_adv_mask"))
    assert names == sorted(os.listdir(two / "cam_adv_mask")) and len(names) == 2
    for n in names:
        a, b = np.load(one / "cam_adv_mask" / n, allow_pickle=True).item(), \
            np.load(two / "cam_adv_mask" / n, allow_pickle=True).item()
        assert np.array_equal(a["high_res"], b["high_res"])
    res_one = json.load(open(one / "results.json"))
    res_two = json.load(open(two / "results.json"))
    assert list(res_one.values()) == list(res_two.values())
