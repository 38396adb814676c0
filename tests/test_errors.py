"""Bad input, as a new user meets it: one error line naming the file or flag and what to do, exit status 2.

Every test runs the console entry points (``cli()``), so what is checked is what the user sees on stderr."""
import os
import sys

import numpy as np
import pytest
import torch
from conftest import save_random_cam_weights

from advcam import obtain_cam_masking, run_sample
from advcam.errors import BadInputError, MissingInputError, UserError
from advcam.io import save_cam_npy, save_png
from advcam.voc12.dataloader import load_seg_label


def _cli(monkeypatch, capsys, module, prog, argv):
    """Run ``module.cli()`` with ``argv``; return (exit status, stderr lines other than progress bars)."""
    monkeypatch.setattr(sys, "argv", [prog, *argv])
    with pytest.raises(SystemExit) as e:
        module.cli()
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "%|" not in line and line.strip()]
    return e.value.code, err


def _ids(voc, split):
    return open(os.path.join(voc, "ImageSets", "Segmentation", split + ".txt")).read().split()


def _cam_files(voc, folder):
    """Valid CAM files for every train_aug/val image (max-normalised, the right shapes)."""
    from PIL import Image
    for name in _ids(voc, "train_aug") + _ids(voc, "val"):
        w, h = Image.open(os.path.join(voc, "JPEGImages", name + ".jpg")).size
        high = np.random.default_rng(0).random((1, h, w), dtype=np.float32)
        save_cam_npy(os.path.join(folder, name + ".npy"), [0], torch.rand(1, (h + 3) // 4, (w + 3) // 4), high)


def test_error_types_keep_their_builtin_family():
    assert issubclass(MissingInputError, FileNotFoundError) and issubclass(MissingInputError, UserError)
    assert issubclass(BadInputError, ValueError) and issubclass(BadInputError, UserError)


@pytest.mark.parametrize("content", [b"definitely not a torch file\n", b"PK\x03\x04truncated zip", b""])
def test_corrupt_cam_checkpoint_is_named(tmp_path, tiny_voc, monkeypatch, capsys, content):
    bad = tmp_path / "res50_cam.pth"
    bad.write_bytes(content)
    argv = ["--voc12_root", tiny_voc, "--train_list", "train.txt", "--num_workers", "0",
            "--cam_weights_name", str(bad), "--cam_out_dir", str(tmp_path / "adv"), "--cam_scales", "1.0"]
    code, err = _cli(monkeypatch, capsys, obtain_cam_masking, "obtain_CAM_masking.py", argv)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("obtain_CAM_masking.py: error: ") and str(bad) in err[0]
    assert "not a torch checkpoint" in err[0]
    assert not os.path.exists(tmp_path / "adv") or os.listdir(tmp_path / "adv") == []  # nothing half-written
    code, err = _cli(monkeypatch, capsys, run_sample, "run_sample.py", argv[:-2] + ["--make_cam_pass", "True",
                                                                                    "--log_name", str(tmp_path / "l")])
    assert code == 2 and len(err) == 1 and str(bad) in err[0] and "not a torch checkpoint" in err[0]


def test_corrupt_irn_checkpoint_is_named(tmp_path, tiny_voc, monkeypatch, capsys):
    _cam_files(tiny_voc, tmp_path / "cam")
    bad = tmp_path / "irn.pth"
    bad.write_text("not a checkpoint")
    code, err = _cli(monkeypatch, capsys, run_sample, "run_sample.py", [
        "--voc12_root", tiny_voc, "--num_workers", "0", "--infer_list", "train.txt", "--cam_out_dir",
        str(tmp_path / "cam"), "--irn_weights_name", str(bad), "--sem_seg_out_dir", str(tmp_path / "sem"),
        "--log_name", str(tmp_path / "l"), "--make_sem_seg_pass", "True"])
    assert code == 2 and len(err) == 1 and str(bad) in err[0] and "not a torch checkpoint" in err[0]


def test_truncated_cam_file_is_named_with_the_fix(tmp_path, tiny_voc, monkeypatch, capsys):
    _cam_files(tiny_voc, tmp_path / "cam")
    victim = tmp_path / "cam" / (_ids(tiny_voc, "train")[1] + ".npy")
    victim.write_bytes(victim.read_bytes()[:90])  # what a non-atomic writer leaves when it is killed
    for passes in (["--eval_cam_pass", "True"], ["--cam_to_ir_label_pass", "True", "--train_list", "train.txt"]):
        code, err = _cli(monkeypatch, capsys, run_sample, "run_sample.py", [
            "--voc12_root", tiny_voc, "--num_workers", "0", "--cam_out_dir", str(tmp_path / "cam"),
            "--ir_label_out_dir", str(tmp_path / "ir"), "--log_name", str(tmp_path / "l"), *passes])
        assert code == 2 and len(err) == 1, err
        assert str(victim) in err[0] and "delete it and rerun" in err[0] and "obtain_CAM_masking.py" in err[0]
        assert "EOF" not in err[0].split(":")[0]


@pytest.mark.slow
def test_truncated_png_inputs_are_named(tmp_path, tiny_voc, monkeypatch, capsys):
    """A damaged IRN mask (eval_sem_seg), IR label (train_irn) and ground truth (eval_cam) each name the file."""
    names = _ids(tiny_voc, "train")
    for name in names:
        save_png(tmp_path / "sem" / f"{name}.png", np.zeros((8, 8), np.uint8))
    damaged = tmp_path / "sem" / f"{names[0]}.png"
    damaged.write_bytes(damaged.read_bytes()[:20])
    base = ["--voc12_root", tiny_voc, "--num_workers", "0", "--log_name", str(tmp_path / "l")]
    code, err = _cli(monkeypatch, capsys, run_sample, "run_sample.py",
                     base + ["--sem_seg_out_dir", str(tmp_path / "sem"), "--eval_sem_seg_pass", "True"])
    assert code == 2 and len(err) == 1 and str(damaged) in err[0] and "unreadable prediction" in err[0]

    save_random_cam_weights(str(tmp_path / "cam.pth"))
    for name in _ids(tiny_voc, "train_aug"):  # valid labels of the images' sizes: only the damaged one can fail,
        save_png(tmp_path / "ir" / f"{name}.png", load_seg_label(tiny_voc, name))  # whatever order the loader reads
    ir = tmp_path / "ir" / f"{names[0]}.png"
    ir.write_bytes(b"\x89PNG\r\n")
    code, err = _cli(monkeypatch, capsys, run_sample, "run_sample.py", base + [
        "--train_list", "train_aug.txt", "--ir_label_out_dir", str(tmp_path / "ir"), "--cam_weights_name",
        str(tmp_path / "cam.pth"), "--irn_weights_name", str(tmp_path / "irn.pth"), "--irn_crop_size", "80",
        "--irn_batch_size", "2", "--no_pretrained", "True", "--train_irn_pass", "True"])
    assert code == 2 and len(err) == 1 and str(ir) in err[0] and "cam_to_ir_label" in err[0]
    assert not os.path.exists(tmp_path / "irn.pth")

    _cam_files(tiny_voc, tmp_path / "cam")
    gt = os.path.join(tiny_voc, "SegmentationClass", names[0] + ".png")
    with open(gt, "wb") as f:
        f.write(b"garbage")
    code, err = _cli(monkeypatch, capsys, run_sample, "run_sample.py",
                     base + ["--cam_out_dir", str(tmp_path / "cam"), "--eval_cam_pass", "True"])
    assert code == 2 and len(err) == 1 and gt in err[0] and "ground truth" in err[0]


def test_truncated_instance_file_is_named(tmp_path, tiny_voc, monkeypatch, capsys):
    os.makedirs(os.path.join(tiny_voc, "SegmentationObject"), exist_ok=True)
    for name in _ids(tiny_voc, "train"):
        seg = np.asarray(__import__("PIL.Image").Image.open(os.path.join(tiny_voc, "SegmentationClass",
                                                                         name + ".png")))
        save_png(os.path.join(tiny_voc, "SegmentationObject", name + ".png"), (seg > 0).astype(np.uint8))
        np.save(tmp_path / f"{name}.npy", {"score": np.zeros(0, np.float32), "mask": np.zeros((0, *seg.shape), bool),
                                           "class": np.zeros(0, np.int64)})
    victim = tmp_path / f"{_ids(tiny_voc, 'train')[0]}.npy"
    victim.write_bytes(victim.read_bytes()[:50])
    code, err = _cli(monkeypatch, capsys, run_sample, "run_sample.py", [
        "--voc12_root", tiny_voc, "--num_workers", "0", "--log_name", str(tmp_path / "l"), "--ins_seg_out_dir",
        str(tmp_path), "--eval_ins_seg_pass", "True"])
    assert code == 2 and len(err) == 1 and str(victim) in err[0] and "make_ins_seg" in err[0]


@pytest.mark.parametrize("step", ["-0.08", "0"])
def test_non_positive_step_is_refused(tiny_voc, monkeypatch, capsys, step):
    code, err = _cli(monkeypatch, capsys, obtain_cam_masking, "obtain_CAM_masking.py",
                     ["--voc12_root", tiny_voc, "--AD_stepsize", step])
    assert code == 2 and "--AD_stepsize must be > 0" in err[-1] and "adversarial" in err[-1]


BAD_VALUES = {"positive": "0", "nonnegative": "-1", "fraction": "1.5"}


@pytest.mark.parametrize("flag,kind", sorted(run_sample.FLAG_RANGES.items()))
def test_every_run_sample_range_is_checked(tiny_voc, monkeypatch, capsys, flag, kind):
    value = ["64", BAD_VALUES[kind]] if flag == "cam_resize_long" else [BAD_VALUES[kind]]
    code, err = _cli(monkeypatch, capsys, run_sample, "run_sample.py",
                     ["--voc12_root", tiny_voc, f"--{flag}", *value, "--eval_cam_pass", "True"])
    assert code == 2 and err[-1].startswith("run_sample.py: error: --" + flag + " must ")


@pytest.mark.parametrize("flag,kind", sorted(obtain_cam_masking.FLAG_RANGES.items()))
def test_every_obtain_cam_range_is_checked(tiny_voc, monkeypatch, capsys, flag, kind):
    code, err = _cli(monkeypatch, capsys, obtain_cam_masking, "obtain_CAM_masking.py",
                     ["--voc12_root", tiny_voc, f"--{flag}", BAD_VALUES[kind]])
    assert code == 2 and err[-1].startswith("obtain_CAM_masking.py: error: --" + flag + " must ")


def test_bugs_keep_their_traceback(tiny_voc, monkeypatch):
    """Only user errors become one line; anything else (here a KeyError inside a pass) propagates unchanged."""
    from advcam.steps import eval_cam

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(eval_cam, "run", broken)
    monkeypatch.setattr(sys, "argv", ["run_sample.py", "--voc12_root", tiny_voc, "--eval_cam_pass", "True",
                                      "--log_name", os.path.join(tiny_voc, "l")])
    with pytest.raises(KeyError, match="a bug"):
        run_sample.cli()


def test_missing_weights_and_voc_root_are_one_line(tmp_path, tiny_voc, monkeypatch, capsys):
    code, err = _cli(monkeypatch, capsys, obtain_cam_masking, "obtain_CAM_masking.py", [
        "--voc12_root", tiny_voc, "--train_list", "train.txt", "--cam_weights_name", str(tmp_path / "none.pth")])
    assert code == 2 and len(err) == 1 and "none.pth" in err[0] and "train_cam" in err[0]
    code, err = _cli(monkeypatch, capsys, run_sample, "run_sample.py",
                     ["--voc12_root", str(tmp_path / "nowhere"), "--eval_cam_pass", "True"])
    assert code == 2 and len(err) == 1 and "nowhere" in err[0]


def test_results_table_names_a_missing_row(tmp_path, capsys):
    from advcam.tools import results_table as table
    res = tmp_path / "results.json"
    res.write_text('{"eval_cam:out/cam": {"miou": 0.4637}}')
    table.main([str(res), "CAM seeds=eval_cam:out/cam"])
    assert "CAM seeds     46.37" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no result for eval_sem_seg:out/sem_seg"):
        table.main([str(res), "CAM seeds=eval_cam:out/cam", "IRN masks=eval_sem_seg:out/sem_seg"])
    assert "IRN masks   missing" in capsys.readouterr().out


def test_atomic_outputs_get_the_permissions_of_a_plain_write(tmp_path):
    """Outputs are readable as a plain open(path, "w") would leave them (0666 less the umask), not 0600."""
    from advcam.io import atomic_path
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp, open(tmp, "w") as f:
            f.write("x")
        with open(tmp_path / "b.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o644
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]  # no temporary file left
