"""The package as pip installs it: its shipped data, its console commands and shell pipelines, from any folder."""
import ast
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import MODULE_RECORDER, ROOT, write_tiny_voc

from advcam.data import DATA_DIR, path, shipped_file
from advcam.errors import MissingInputError
from advcam.voc12.dataloader import load_img_name_list, resolve_list


def _setup_constant(name: str):
    """A literal assigned at the top level of setup.py (setup.py itself cannot be imported: it runs setup())."""
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"setup.py has no {name}")


def _data_files(folder: str) -> set[str]:
    """Every data file under ``folder`` (an advcam/data tree), relative to it: all but the Python modules."""
    found = set()
    for dirpath, dirnames, files in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        found |= {os.path.relpath(os.path.join(dirpath, f), folder) for f in files if not f.endswith((".py", ".pyc"))}
    return found


# ---- fast: what setup.py declares, where shipped files resolve, the pipelines' own arguments ----------------

def test_every_data_file_is_declared_package_data():
    """setup.py's package_data globs (matched as setuptools matches them) select exactly the tree's data files."""
    declared = set()
    for pattern in _setup_constant("PACKAGE_DATA"):
        declared |= {os.path.relpath(f, DATA_DIR) for f in glob.glob(os.path.join(DATA_DIR, pattern), recursive=True)
                     if os.path.isfile(f)}
    tree = _data_files(DATA_DIR)
    assert {"voc12/train_aug.txt", "voc12/cls_labels.npy", "get_mask_quality.sh", "voc_root_args.sh"} <= tree
    assert tree - declared == set(), "add their kind to PACKAGE_DATA in setup.py"
    assert declared - tree == set()


def test_console_commands_name_existing_functions():
    import importlib

    scripts = dict(s.split("=") for s in _setup_constant("CONSOLE_SCRIPTS"))
    assert {"advcam-run-sample", "advcam-obtain-cam", "advcam-check-voc", "advcam-make-toy-voc",
            "advcam-demo-imagenet", "advcam-report", "advcam-bench", "advcam-mask-quality",
            "advcam-seed-quality"} <= set(scripts)
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target


def test_shipped_lists_resolve_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shipped_file("voc12/train_aug.txt") == os.path.join(DATA_DIR, "voc12", "train_aug.txt")
    assert shipped_file("./voc12/val.txt") == path("voc12/val.txt")
    assert len(load_img_name_list("voc12/train_aug.txt")) == 10582
    assert len(load_img_name_list("voc12/val.txt", str(tmp_path / "no_root"))) == 1449
    # only data files: not the package's modules or scripts, nothing outside, no absolute path
    for name in ("get_mask_quality.sh", "__init__.py", "voc12/../__init__.py", "../data/voc12/train.txt",
                 os.path.join(DATA_DIR, "voc12", "train.txt"), "voc12/nothing.txt", "voc12"):
        assert shipped_file(name) is None, name
    with pytest.raises(MissingInputError, match=r"nothing\.txt is not a file shipped with advcam"):
        path("voc12/nothing.txt")
    # a list of that name in the current folder comes first; then the shipped one; then the root's
    (tmp_path / "voc12").mkdir()
    (tmp_path / "voc12" / "train.txt").write_text("2007_000032\n")
    assert load_img_name_list("voc12/train.txt") == ["2007_000032"]
    root = tmp_path / "root"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "mine.txt").write_text("2007_000039\n")
    assert resolve_list("voc12/mine.txt", str(root)) == str(root / "ImageSets" / "Segmentation" / "mine.txt")
    with pytest.raises(MissingInputError) as e:
        resolve_list("voc12/none.txt", str(root))
    assert str(e.value).startswith(f"image list voc12/none.txt not found nor among the lists shipped in "
                                   f"{DATA_DIR}/voc12/ nor in {root}/ImageSets/Segmentation/: ")


def _bash(script, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("VOC12_ROOT", "OUT", "TOY_VOC")}
    return subprocess.run(["bash", os.path.join(ROOT, script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("script", ["get_mask_quality.sh", "get_seed_quality.sh"])
def test_pipeline_help_and_unknown_option(tmp_path, script):
    """--help prints the usage and exits 0; an unknown option is one error line; neither builds or writes anything."""
    res = _bash(script, "--help", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith(f"usage: {script} ") and res.stderr == ""
    assert "PYTHON" in res.stdout and "LAUNCH" in res.stdout
    res = _bash(script, "--voc12_root", str(tmp_path), "--device", "cpu", "--adv_itr", "3", cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [f"{script}: error: unknown option --adv_itr (see --help)"]
    assert os.listdir(tmp_path) == []


def test_mask_pipeline_refuses_a_flag_of_one_pass_only(tmp_path):
    """Every extra argument of get_mask_quality.sh goes to both passes: a run_sample-only flag stops it at once."""
    res = _bash("get_mask_quality.sh", "--irn_num_epoches=1", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.splitlines() == ["get_mask_quality.sh: error: --irn_num_epoches is not a flag of "
                                       "obtain_CAM_masking.py, to which this script passes every extra argument "
                                       "(see --help)"]
    assert os.listdir(tmp_path) == []


def test_demo_imagenet_writes_no_tracked_figure_by_default():
    from advcam.tools.demo_imagenet import parse_args

    assert parse_args([]).out == "advcam_any_network.png"  # the current folder, not the clone's docs/
    assert parse_args(["--out", "docs/advcam_any_network.png"]).out == "docs/advcam_any_network.png"


# ---- slow: pip install into a fresh virtual environment, then run from a folder outside the clone -------------


# the toy demo at toy sizes: 64 px classifier crops, 80 px IRN crops, one epoch, two climbing steps (the steps of one
# image saved: the toy set's train list has 4 images), two segmentation updates
TINY = {
    "advcam.run_sample": ["--num_workers", "0", "--cam_crop_size", "64", "--cam_resize_long", "48", "80",
                          "--cam_batch_size", "4", "--cam_num_epoches", "1", "--irn_crop_size", "80",
                          "--irn_batch_size", "4", "--irn_num_epoches", "1", "--exp_times", "2",
                          "--seg_num_iters", "2", "--seg_batch_size", "2", "--seg_crop_size", "64",
                          "--seg_scales", "1.0", "--seg_infer_scales", "1.0"],
    "advcam.obtain_cam_masking": ["--num_workers", "0", "--adv_iter", "2", "--save_steps", "2100_000002"],
}

# what a clone holds besides the package and its setup: not copied into the source the test installs
_NOT_SOURCE = shutil.ignore_patterns(".git", "tests", "docs", "result", "sess", "demo_out", "demo_dist", "toy_voc",
                                     "demo_coco", "toy_coco",
                                     "*.log", "__pycache__", "*.egg-info", "build", "dist", ".venv", ".*_cache")


@pytest.mark.slow
def test_pip_installed_package_runs_the_toy_demo_outside_the_clone(tmp_path):
    """``pip install <clone>`` (not editable, no network) into a fresh venv; then, from another folder, the installed
    commands find the shipped lists and labels, check a root, and run the toy demo through advcam-mask-quality."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)  # the clone's files, so the in-tree build leaves the clone alone
    venv = tmp_path / "venv"
    t0 = time.time()
    # without a pip of its own: the system's pip and setuptools (found through the system site) install into it,
    # as an isolated build would with a current setuptools from PyPI (the venv's bundled one predates bdist_wheel)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    py, bin_dir = str(venv / "bin" / "python"), venv / "bin"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(src)],
                   check=True, capture_output=True, cwd=tmp_path)
    print(f"venv + pip install: {time.time() - t0:.1f} s")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VOC12_ROOT", "OUT", "TOY_VOC", "LAUNCH")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", OMP_NUM_THREADS="1", PYTHON=py)

    def run(*args, **kw):
        return subprocess.run([str(a) for a in args], cwd=work, env=kw.pop("env", env), capture_output=True,
                              text=True, **kw)

    # the installed package (not the clone) with its data: the shipped lists and labels from this folder
    res = run(py, "-c", "import advcam.data as d, advcam.voc12 as v; from advcam.voc12.dataloader import "
                        "load_img_name_list as L, load_cls_labels as C; "
                        "print(d.DATA_DIR, len(L('voc12/train_aug.txt')), len(C(v.PACKAGED_CLS_LABELS)))")
    assert res.returncode == 0, res.stderr[-2000:]
    installed, n_ids, n_labels = res.stdout.split()
    assert installed.startswith(str(venv)) and (n_ids, n_labels) == ("10582", "12031")
    shipped = _data_files(DATA_DIR)
    assert _data_files(installed) == shipped
    assert all(open(os.path.join(installed, f), "rb").read() == open(os.path.join(DATA_DIR, f), "rb").read()
               for f in shipped)
    for name in dict(s.split("=") for s in _setup_constant("CONSOLE_SCRIPTS")):
        assert (bin_dir / name).is_file(), name
    res = run(bin_dir / "advcam-run-sample", "--help")
    assert res.returncode == 0 and "usage:" in res.stdout

    # advcam-check-voc on a tiny root
    voc = write_tiny_voc(str(tmp_path / "voc"), n=6)
    lists = os.path.join(voc, "ImageSets", "Segmentation")
    res = run(bin_dir / "advcam-check-voc", "--voc12_root", voc, "--train_list", f"{lists}/train_aug.txt",
              "--train_seg_list", f"{lists}/train.txt", "--val_list", f"{lists}/val.txt")
    assert res.returncode == 0 and "check_voc: OK" in res.stdout, res.stdout + res.stderr

    # the toy demo through the installed pipeline command, on a small toy set, every pass at toy sizes
    res = run(bin_dir / "advcam-make-toy-voc", "--out", "toy_voc", "--num_train", "8", "--num_val", "2",
              "--size", "64")
    assert res.returncode == 0, res.stderr[-2000:]
    (tmp_path / "wrap.py").write_text(MODULE_RECORDER)
    demo_env = dict(env, PYTHON=f"{py} {tmp_path / 'wrap.py'}", WRAP_LOG=str(tmp_path / "calls.jsonl"),
                    WRAP_EXTRA=json.dumps(TINY))
    t1 = time.time()
    res = run(bin_dir / "advcam-mask-quality", "--device", "cpu", env=demo_env, timeout=900)
    print(f"toy demo at toy sizes: {time.time() - t1:.1f} s")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    calls = [json.loads(line)[0] for line in open(tmp_path / "calls.jsonl")]
    assert calls == ["advcam.tools.pipelines"] + ["advcam.run_sample"] * 2 + ["advcam.obtain_cam_masking"] + \
        ["advcam.run_sample"] * 2 + ["advcam.tools.results_table", "advcam.tools.report"]
    rows = {line.split("  ")[0]: line.split()[-1] for line in res.stdout.splitlines() if "seeds  " in line
            or line.startswith(("IRN masks", "Segmentation"))}
    assert set(rows) == {"CAM seeds", "AdvCAM seeds", "IRN masks", "Segmentation (val)", "Segmentation (val, CRF)"}
    assert all(0 <= float(v) <= 100 for v in rows.values()), rows
    assert (work / "demo_out" / "results.json").is_file() and (work / "demo_out" / "report" / "report.html").is_file()
    # everything under the current folder; nothing written into the installed package
    assert sorted(os.listdir(work)) == ["demo_out", "toy_voc"]
    assert _data_files(installed) == shipped
