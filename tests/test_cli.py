"""The command lines as a newcomer meets them: one error line for a bad image, flag or list, the program named as
it was called, no folders for passes that did not run, and a --help that documents every option once."""
import argparse
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, save_random_cam_weights, write_tiny_voc

from advcam import obtain_cam_masking, run_sample
from advcam.evaluation import eval_names
from advcam.io import save_cam_npy
from advcam.utils import user_message


def _cli(monkeypatch, capsys, module, prog, argv):
    """Run ``module.cli()`` as ``prog argv``; return (exit status, stderr lines other than progress bars)."""
    monkeypatch.setattr(sys, "argv", [prog, *argv])
    with pytest.raises(SystemExit) as e:
        module.cli()
    err = [line for line in capsys.readouterr().err.splitlines() if "%|" not in line and line.strip()]
    return e.value.code, err


def _ids(voc, split):
    with open(os.path.join(voc, "ImageSets", "Segmentation", split + ".txt")) as f:
        return f.read().split()


def _corrupt(voc, name):
    """Cut a JPEG of the root short, as an interrupted copy leaves it."""
    path = os.path.join(voc, "JPEGImages", name + ".jpg")
    with open(path, "rb") as f:
        head = f.read(300)
    with open(path, "wb") as f:
        f.write(head)
    return path


@pytest.fixture(scope="module")
def cam_weights(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sess") / "cam.pth")
    save_random_cam_weights(path)
    return path


def _run_obtain_cam(cwd, argv):
    """obtain_CAM_masking.py in a fresh interpreter, as a user runs it: (exit status, stderr)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, os.path.join(ROOT, "obtain_CAM_masking.py"), *argv], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stderr


def _error_lines(stderr):
    """stderr without the progress bars; a bar and the error glued on one line would count as an error line."""
    return [line for line in stderr.split("\n") if line.strip() and ("%|" not in line or "error:" in line)]


def test_corrupt_jpeg_in_a_loader_worker_is_one_line(tmp_path, cam_weights):
    """With a DataLoader worker process (--num_workers 1) the message is the image's own, without the worker's
    traceback (25 lines before), on a line of its own after the progress bar."""
    voc = write_tiny_voc(str(tmp_path / "voc"))
    bad = _corrupt(voc, _ids(voc, "train")[1])
    code, err = _run_obtain_cam(tmp_path, ["--voc12_root", voc, "--train_list", "train.txt", "--num_workers", "1",
                                           "--cam_weights_name", cam_weights, "--cam_out_dir", str(tmp_path / "adv"),
                                           "--cam_scales", "1.0", "--adv_iter", "1"])
    lines = _error_lines(err)
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("obtain_CAM_masking.py: error: image ") and bad in lines[0]
    assert "could not be read" in lines[0] and "--skip_bad_images True" in lines[0]


def test_all_images_unreadable_is_an_error(tmp_path, cam_weights, monkeypatch, capsys):
    """--skip_bad_images True skips bad images, but a pass that could read none of them fails (it exited 0)."""
    voc = write_tiny_voc(str(tmp_path / "voc"))
    for name in _ids(voc, "train"):
        _corrupt(voc, name)
    argv = ["--voc12_root", voc, "--train_list", "train.txt", "--num_workers", "0", "--cam_weights_name",
            cam_weights, "--cam_out_dir", str(tmp_path / "adv"), "--cam_scales", "1.0", "--skip_bad_images", "True"]
    code, err = _run_obtain_cam(tmp_path, argv + ["--adv_iter", "1"])
    lines = _error_lines(err)
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("obtain_CAM_masking.py: error: none of the 4 images") and "could be read" in lines[0]
    monkeypatch.chdir(tmp_path)
    code, err = _cli(monkeypatch, capsys, run_sample, "run_sample.py",
                     argv + ["--log_name", str(tmp_path / "log"), "--make_cam_pass", "True"])
    assert code == 2 and len(err) == 1 and err[0].startswith("run_sample.py: error: none of the 4 images"), err


def test_some_images_unreadable_still_succeeds(tmp_path, cam_weights, monkeypatch):
    voc = write_tiny_voc(str(tmp_path / "voc"))
    names = _ids(voc, "train")
    _corrupt(voc, names[0])
    monkeypatch.chdir(tmp_path)
    out = run_sample.main(["--voc12_root", voc, "--train_list", "train.txt", "--num_workers", "0",
                           "--cam_weights_name", cam_weights, "--cam_out_dir", str(tmp_path / "cam"),
                           "--cam_scales", "1.0", "--skip_bad_images", "True", "--make_cam_pass", "True"])
    assert out["make_cam"]["images"] == 3 and out["make_cam"]["bad"] == 1
    assert sorted(os.listdir(tmp_path / "cam")) == sorted(n + ".npy" for n in names[1:])


@pytest.mark.parametrize("module,prog,argv,message", [
    (obtain_cam_masking, "obtain_CAM_masking.py", ["--adv", "0"], "unrecognized arguments: --adv 0"),
    (obtain_cam_masking, "obtain_CAM_masking.py", ["--adv_iter", "x"], "argument --adv_iter: invalid int value: 'x'"),
    (run_sample, "run_sample.py", ["--eval_cam", "True"], "unrecognized arguments: --eval_cam True"),
    (run_sample, "run_sample.py", ["--engine", "fast"], "unrecognized arguments: --engine fast"),
    (run_sample, "run_sample.py", ["--seg_recipe", "x"], "argument --seg_recipe: invalid choice: 'x'"),
])
def test_a_flag_error_is_one_line_and_flags_are_never_abbreviated(monkeypatch, capsys, module, prog, argv, message):
    code, err = _cli(monkeypatch, capsys, module, prog, argv)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"{prog}: error: {message}") and err[0].endswith(" (see --help)")


def test_errors_name_the_program_as_called(tmp_path, tiny_voc, monkeypatch, capsys):
    """Installed as a console command, the program names itself by the command, in flag errors and user errors."""
    code, err = _cli(monkeypatch, capsys, obtain_cam_masking, "/venv/bin/advcam-obtain-cam", ["--adv", "0"])
    assert code == 2 and err[0].startswith("advcam-obtain-cam: error: unrecognized arguments")
    code, err = _cli(monkeypatch, capsys, obtain_cam_masking, "/venv/bin/advcam-obtain-cam",
                     ["--voc12_root", tiny_voc, "--train_list", "train.txt", "--cam_weights_name",
                      str(tmp_path / "none.pth")])
    assert code == 2 and len(err) == 1 and err[0].startswith("advcam-obtain-cam: error: CAM weights not found")
    code, err = _cli(monkeypatch, capsys, run_sample, "/venv/bin/advcam-run-sample", ["--voc12_root", tiny_voc])
    assert code == 2 and len(err) == 1 and err[0].startswith("advcam-run-sample: error: nothing to do")


def test_python_m_names_the_module(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "advcam.obtain_cam_masking", "--adv", "0"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr == "python -m advcam.obtain_cam_masking: error: unrecognized arguments: --adv 0 (see --help)\n"


def _cam_files(voc, folder, names):
    """Valid CAM files (one class, random maps of the image's size) for ``names``."""
    from PIL import Image
    for name in names:
        w, h = Image.open(os.path.join(voc, "JPEGImages", name + ".jpg")).size
        high = np.random.default_rng(0).random((1, h, w), dtype=np.float32)
        save_cam_npy(os.path.join(folder, name + ".npy"), [0], torch.rand(1, (h + 3) // 4, (w + 3) // 4), high)


def test_only_the_passes_that_run_make_folders(tmp_path, tiny_voc, monkeypatch):
    """eval_cam alone reads --cam_out_dir and writes nothing: no sess/, ir_label/, sem_seg/ or ins_seg/ appear."""
    _cam_files(tiny_voc, tmp_path / "seeds", _ids(tiny_voc, "train"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = run_sample.main(["--voc12_root", tiny_voc, "--num_workers", "0", "--cam_out_dir", str(tmp_path / "seeds"),
                           "--eval_cam_pass", "True"])
    assert 0 <= out["eval_cam"]["miou"] <= 1
    assert sorted(os.listdir(work)) == ["sample_train_eval.log"]
    assert sorted(os.listdir(tmp_path)) == ["seeds", "voc", "work"]


def test_chainer_eval_set_takes_a_split_name_or_a_list_path(tmp_path, tiny_voc, monkeypatch, capsys):
    names = _ids(tiny_voc, "train")
    args = argparse.Namespace(voc12_root=tiny_voc, chainer_eval_set="train")
    assert eval_names(args) == names
    two = tmp_path / "two.txt"
    two.write_text("\n".join(names[1:3]) + "\n")
    args.chainer_eval_set = str(two)  # used as given (".txt" was appended)
    assert eval_names(args) == names[1:3]
    monkeypatch.chdir(tmp_path)
    args.chainer_eval_set = "two.txt"  # a relative path too
    assert eval_names(args) == names[1:3]
    _cam_files(tiny_voc, tmp_path / "seeds", names)
    code, err = _cli(monkeypatch, capsys, run_sample, "run_sample.py", [
        "--voc12_root", tiny_voc, "--num_workers", "0", "--cam_out_dir", str(tmp_path / "seeds"),
        "--chainer_eval_set", str(tmp_path / "none.txt"), "--eval_cam_pass", "True"])
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"run_sample.py: error: --chainer_eval_set {tmp_path / 'none.txt'}: no such list file")
    code, err = _cli(monkeypatch, capsys, run_sample, "run_sample.py", [
        "--voc12_root", tiny_voc, "--num_workers", "0", "--cam_out_dir", str(tmp_path / "seeds"),
        "--chainer_eval_set", "nosuchsplit", "--eval_cam_pass", "True"])
    assert code == 2 and len(err) == 1 and "--chainer_eval_set nosuchsplit: neither " in err[0], err


def test_eval_on_a_root_without_imagesets_reads_the_shipped_split(tmp_path, tiny_voc, monkeypatch):
    """A VOC copy without ImageSets/ is scored on the shipped voc12/train.txt (1,464 ids), from any folder."""
    import shutil

    from advcam.steps import eval_cam
    shutil.rmtree(os.path.join(tiny_voc, "ImageSets"))
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(voc12_root=tiny_voc, chainer_eval_set="train", cam_out_dir=str(tmp_path / "seeds"))
    names = eval_names(args)
    assert len(names) == 1464 and names[:2] == ["2007_000032", "2007_000039"]
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "seeds" / "2007_000032.npy")):
        eval_cam.run(args)  # the first id of the shipped list is the first file it looks for
    args.chainer_eval_set = "voc12/val.txt"  # a list path: the shipped one, as every list flag
    assert len(eval_names(args)) == 1449


def test_user_message_unwraps_a_spawned_worker_error():
    """A UserError raised in a spawned per-GPU worker process reaches the parent as ProcessRaisedException with the
    worker's traceback: the user reads only its message; any other error stays a bug."""
    with pytest.raises(torch.multiprocessing.ProcessRaisedException) as e:
        torch.multiprocessing.start_processes(_raise_in_worker, nprocs=1, start_method="spawn")
    assert user_message(e.value) == "image x.jpg could not be read: replace it"
    bug = str(e.value).replace("advcam.errors.BadInputError", "KeyError")  # the same traceback, of another error
    assert user_message(torch.multiprocessing.ProcessRaisedException(bug, 0, 1)) is None


def _raise_in_worker(rank):
    from advcam.errors import BadInputError
    raise BadInputError("image x.jpg could not be read: replace it")


PARSERS = {"run_sample": run_sample.build_parser, "obtain_cam_masking": obtain_cam_masking.build_parser}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_is_documented_with_its_default_once(name):
    parser = PARSERS[name]()
    fmt = parser._get_formatter()
    assert not parser.allow_abbrev
    undocumented, twice = [], []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = fmt._expand_help(action) if action.help else ""
        if not text.strip():
            undocumented.append(action.dest)
        elif text.count("(default") != 1:
            twice.append((action.dest, text))
    assert not undocumented and not twice, (undocumented, twice)


@pytest.mark.parametrize("name,groups", [
    ("run_sample", ["environment and data", "train_cam", "make_cam and eval_cam", "cam_to_ir_label", "train_irn",
                    "random walk", "stage 3", "outputs", "passes", "accepted for compatibility, ignored"]),
    ("obtain_cam_masking", ["environment and data", "anti-adversarial climbing", "outputs",
                            "accepted for compatibility, ignored"]),
])
def test_help_runs_and_is_grouped(monkeypatch, capsys, name, groups):
    module = run_sample if name == "run_sample" else obtain_cam_masking
    monkeypatch.setattr(sys, "argv", [name + ".py", "--help"])
    with pytest.raises(SystemExit) as e:
        module.cli()
    out = capsys.readouterr().out
    assert e.value.code == 0
    titles = [line[:-1] for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
    for g in groups:
        assert any(t.startswith(g) for t in titles), (g, titles)
    assert "unused" not in out
    if name == "obtain_cam_masking":  # the reference's flags of other passes: each listed, one line, as ignored
        compat = out.split("accepted for compatibility, ignored:")[1]
        for flag in ("val_list", "infer_list", "chainer_eval_set", "cam_crop_size", "cam_batch_size",
                     "cam_num_epoches", "cam_learning_rate", "cam_weight_decay", "cam_eval_thres"):
            assert f"--{flag}" in compat
