"""The user tools' command lines (advcam/tools/*): one-line flag errors with exit status 2, no abbreviated flags,
help on every option with its default shown once; and the evaluated split of check_voc and the report found as the
eval passes find it (a split name: the root's ImageSets/Segmentation/<set>.txt, else the shipped list; a path as
given)."""
import argparse
import importlib
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from advcam.data import DATA_DIR
from advcam.errors import MissingInputError
from advcam.io import save_png
from advcam.utils import ArgParser, HelpFormatter
from advcam.voc12.check import check_voc, default_specs
from advcam.voc12.dataloader import load_img_name_list, load_seg_label

SHIPPED_VOC = os.path.join(DATA_DIR, "voc12")

# tool: (arguments that are otherwise complete, an abbreviation of one of its flags and its value)
TOOLS = {
    "check_voc": (["--voc12_root", "ROOT"], ["--voc12", "x"]),
    "make_toy_voc": (["--out", "OUT"], ["--num_tr", "3"]),
    "demo_imagenet": ([], ["--adv_it", "2"]),
    "report": (["--out", "OUT"], ["--eval_s", "val"]),
    "bench_advcam": (["--device", "cpu"], ["--adv_it", "2"]),
    "map_scale": (["--imagenet"], ["--coun", "3"]),
    "results_table": (["results.json", "A=eval_cam:x"], ["--hel"]),  # its only flag is --help
    "pipelines": (["check", "mask"], ["--hel"]),
    "make_coco_masks": (["--split", "val2014"], ["--work", "2"]),
    "check_coco": (["--coco_root", "ROOT"], ["--no_mask"]),
    "make_toy_coco": (["--out", "OUT"], ["--n_tr", "3"]),
}


def _tool(name):
    return importlib.import_module(f"advcam.tools.{name}")


def _error_of(capsys, monkeypatch, tmp_path, name, args):
    """Run the tool's main on ``args`` (placeholders filled in): (exit status, stderr lines, stdout)."""
    monkeypatch.setattr(sys, "argv", [""])  # the program is then named by its default, as under python -c
    fill = {"ROOT": str(tmp_path), "OUT": str(tmp_path / "out")}
    with pytest.raises(SystemExit) as e:
        _tool(name).main([fill.get(a, a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, err.splitlines(), out


@pytest.mark.parametrize("name", TOOLS)
def test_a_flag_error_is_one_line_with_status_2(name, capsys, monkeypatch, tmp_path):
    base, abbrev = TOOLS[name]
    # an argument the tool would take at the front, where a flag goes
    put = (lambda extra: extra + base) if name in ("results_table", "pipelines") else (lambda extra: base + extra)
    for extra in (["--no_such_flag"], abbrev):
        code, err, _ = _error_of(capsys, monkeypatch, tmp_path, name, put(extra))
        assert code == 2, (name, extra)
        assert err == [f"{name}.py: error: unrecognized arguments: {' '.join(extra)} (see --help)"], (name, err)
    assert not (tmp_path / "out").exists()  # nothing was made before the flags were refused


@pytest.mark.parametrize("name", TOOLS)
def test_help_exits_0_and_states_each_default_once(name, capsys, monkeypatch, tmp_path):
    code, err, out = _error_of(capsys, monkeypatch, tmp_path, name, ["--help"])
    assert code == 0 and err == [] and out.startswith(f"usage: {name}.py ")
    parser = _tool(name).build_parser()
    assert isinstance(parser, ArgParser) and parser.formatter_class is HelpFormatter and not parser.allow_abbrev
    formatter = parser._get_formatter()
    for action in parser._actions:
        assert action.help, (name, action.dest)
        text = formatter._expand_help(action)
        stated = text.count("(default")
        if action.default is None or action.default is argparse.SUPPRESS:
            assert stated <= 1, (name, action.dest, text)  # said in words, if at all
        else:
            assert stated == 1, (name, action.dest, text)
        if action.default is not None and action.default is not argparse.SUPPRESS and "(default" not in action.help \
                and "%(default)" not in action.help:  # the formatter appends it
            assert text.endswith(f"(default: {action.default})"), (name, action.dest, text)


def test_commands_name_themselves_as_called(tmp_path):
    """Under python -m and through the clone's script, the one line names the command as it was typed."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    for cmd, prog in (([sys.executable, "-m", "advcam.tools.check_voc"], "python -m advcam.tools.check_voc"),
                      ([sys.executable, os.path.join(ROOT, "scripts", "check_voc.py")], "check_voc.py")):
        res = subprocess.run(cmd + ["--voc12", str(tmp_path)], capture_output=True, text=True, cwd=str(tmp_path),
                             env=env)
        assert res.returncode == 2
        assert res.stderr.splitlines() == [f"{prog}: error: unrecognized arguments: --voc12 {tmp_path} (see --help)"]


def test_a_user_error_through_cli_is_one_line(tmp_path, capsys, monkeypatch):
    table = _tool("results_table")
    monkeypatch.setattr(sys, "argv", ["results_table.py", str(tmp_path / "none.json"), "A=eval_cam:x"])
    with pytest.raises(SystemExit) as e:
        table.cli()
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"results_table.py: error: {tmp_path / 'none.json'} not found: run the evaluation passes with --results_json "
        f"{tmp_path / 'none.json'}"]
    monkeypatch.setattr(sys, "argv", ["results_table.py", str(tmp_path / "none.json"), "no equals sign"])
    with pytest.raises(SystemExit) as e:
        table.cli()
    assert e.value.code == 2 and capsys.readouterr().err.splitlines() == [
        "results_table.py: error: argument ROW: 'no equals sign' is not 'Row name=eval_pass:folder' (see --help)"]


def test_pipelines_check_keeps_the_scripts_arguments(capsys):
    pipelines = _tool("pipelines")
    assert pipelines.main(["check", "seed"]) == 0
    assert pipelines.main(["check", "seed", "--adv_iter", "3", "--help"]) == 0  # the passes' own flags, as given
    assert pipelines.main(["check", "seed", "--irn_num_epoches", "1"]) == 2
    assert capsys.readouterr().err.splitlines() == ["get_seed_quality.sh: error: unknown option --irn_num_epoches "
                                                    "(see --help)"]


# ---- the evaluated split: a split name or a list file -----------------------------------------------------------

@pytest.fixture
def root_without_imagesets(tiny_voc):
    """The tiny root without ImageSets/, and its train ids (written beside it as a list file)."""
    ids = load_img_name_list(os.path.join(tiny_voc, "ImageSets", "Segmentation", "train.txt"))
    shutil.rmtree(os.path.join(tiny_voc, "ImageSets"))
    given = os.path.join(os.path.dirname(tiny_voc), "my_ids.txt")
    with open(given, "w") as f:
        f.write("\n".join(ids[:3]) + "\n")
    return tiny_voc, given, ids[:3]


def test_check_voc_finds_the_eval_set_as_the_eval_passes(root_without_imagesets, capsys):
    root, given, ids = root_without_imagesets
    # a split name the root lacks: the shipped list (real VOC ids, none of which the toy root has)
    report = check_voc(root, default_specs(root, None, None, None, None, "train"))
    (r,) = report.lists
    assert r.path == os.path.join(SHIPPED_VOC, "train.txt") and len(r.names) == 1464 and r.present == {"PNG": 0}
    assert len(report.problems) == 1464 and {p.kind for p in report.problems} == {"PNG"}
    # a list file: read as given
    report = check_voc(root, default_specs(root, None, None, None, None, given))
    assert report.ok and report.lists[0].path == given and report.lists[0].names == ids
    # neither: one problem naming the flag
    report = check_voc(root, default_specs(root, None, None, None, None, "nosuch"))
    assert [(p.kind, p.lists) for p in report.problems] == [("list", ["--chainer_eval_set"])]
    assert report.problems[0].what.startswith(f"--chainer_eval_set nosuch: neither "
                                              f"{os.path.join(root, 'ImageSets', 'Segmentation', 'nosuch.txt')}")
    # the command line: only the evaluated split, from the given file
    check = _tool("check_voc")
    assert check.main(["--voc12_root", root, "--train_list", "none", "--train_seg_list", "none", "--val_list",
                       "none", "--chainer_eval_set", given]) == 0
    assert f"--chainer_eval_set  {given}  3 ids, PNG 3/3" in capsys.readouterr().out


def test_report_scores_the_eval_set_as_the_eval_passes(root_without_imagesets, tmp_path, capsys, monkeypatch):
    from advcam import report

    root, given, ids = root_without_imagesets
    masks = tmp_path / "run" / "sem_seg"
    names = sorted(f[:-4] for f in os.listdir(os.path.join(root, "JPEGImages")))
    for n in names:  # a mask for every image: the list alone decides which are scored
        gt = load_seg_label(root, n)
        save_png(str(masks / f"{n}.png"), np.where(gt == 255, 0, gt).astype(np.uint8))
    folders = report.RunFolders(voc12_root=root, sem_seg_dir=str(masks))
    page = open(report.make_report(folders, str(tmp_path / "rep"), num_images=1, eval_set=given)).read()
    assert f"evaluated on <code>{given}</code> (3 ids)" in page
    assert f"<td>IRN mask</td><td>{masks}</td><td>3/3</td>" in page
    # a split name the root lacks: the shipped list (real VOC ids: no mask is scored)
    page = open(report.make_report(folders, str(tmp_path / "rep2"), num_images=1, eval_set="val")).read()
    assert "evaluated on <code>val</code> (1449 ids)" in page and "<td>IRN mask</td>" not in page
    with pytest.raises(MissingInputError, match=r"^--eval_set nosuch: neither .*nosuch\.txt nor a shipped"):
        report.make_report(folders, str(tmp_path / "rep3"), eval_set="nosuch")
    # the command line: one line, exit status 2
    code, err, _ = _error_of(capsys, monkeypatch, tmp_path, "report",
                             ["--voc12_root", root, "--sem_seg_dir", str(masks), "--report_dir",
                              str(tmp_path / "rep4"), "--eval_set", "nosuch"])
    assert code == 2 and len(err) == 1 and re.match(r"report\.py: error: --eval_set nosuch: neither ", err[0])
