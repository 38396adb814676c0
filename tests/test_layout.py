"""The layering of the package, read from the import statements of every source file.

passes (advcam/steps) never import each other; scripts and tools never import pass internals; the data layer
(advcam/voc12) and the base modules never import the loops, the passes or the entry points."""
import ast
import fnmatch
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _imports(path: str) -> set[str]:
    """Absolute module names imported by a file (``from a.b import c`` gives a.b and a.b.c)."""
    tree = ast.parse(open(path).read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _files(folder: str) -> list[str]:
    base = os.path.join(ROOT, folder)
    return sorted(os.path.join(base, f) for f in os.listdir(base) if f.endswith(".py"))


@pytest.mark.parametrize("path", _files("advcam/steps"), ids=os.path.basename)
def test_passes_do_not_import_each_other(path):
    own = "advcam.steps." + os.path.basename(path)[:-3]
    others = {m for m in _imports(path) if m.startswith("advcam.steps") and m not in ("advcam.steps", own)}
    assert not others, f"{path} imports {sorted(others)}: move the shared code one layer down"


# advcam/tools/pipelines.py checks a pipeline's extra flags against the entry points' own parsers (build_parser)
ENTRY_POINT_PARSERS = {os.path.join(ROOT, "advcam", "tools", "pipelines.py")}


@pytest.mark.parametrize("path", _files("scripts") + _files("tools") + _files("advcam/tools"),
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_scripts_do_not_import_passes(path):
    internals = ("advcam.steps",) if path in ENTRY_POINT_PARSERS else \
        ("advcam.steps", "advcam.run_sample", "advcam.obtain_cam")
    bad = {m for m in _imports(path) if m.startswith(internals)}
    assert not bad, f"{path} imports pass internals {sorted(bad)}"


LOWER = ["advcam/voc12", "advcam/io.py", "advcam/errors.py", "advcam/imutils.py", "advcam/metrics.py",
         "advcam/indexing.py", "advcam/crf.py", "advcam/pseudo_labels.py"]


@pytest.mark.parametrize("rel", LOWER)
def test_lower_layers_do_not_import_upper_ones(rel):
    path = os.path.join(ROOT, rel)
    paths = _files(rel) if os.path.isdir(path) else [path]
    upper = ("advcam.steps", "advcam.cam_loop", "advcam.irn_loop", "advcam.run_sample", "advcam.obtain_cam_masking")
    for p in paths:
        bad = {m for m in _imports(p) if m.startswith(upper)}
        assert not bad, f"{p} imports {sorted(bad)}"
    assert all(not m.startswith("voc12") for p in paths for m in _imports(p))  # the old top-level package is gone


def _package_data_patterns() -> list[str]:
    """setup.py's ``PACKAGE_DATA`` (the globs of ``advcam/data/`` that the wheel ships), read without running it."""
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PACKAGE_DATA" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no PACKAGE_DATA")


def _is_package_data(rel: str, patterns: list[str]) -> bool:
    """Whether ``rel`` (relative to advcam/data/) matches a setuptools glob: ``**/`` is zero or more folders."""
    for pat in patterns:
        if pat.startswith("**/"):
            if fnmatch.fnmatchcase(os.path.basename(rel), pat[3:]):
                return True
        elif fnmatch.fnmatchcase(rel, pat):
            return True
    return False


def test_the_data_folder_holds_data_only():
    """advcam/data/ holds the shipped lists, labels and shell pipelines: its only module is the resolver
    (``__init__.py``), and every other file is package data that setup.py ships (so the wheel has it)."""
    data = os.path.join(ROOT, "advcam", "data")
    files = sorted(os.path.relpath(os.path.join(d, f), data) for d, subs, fs in os.walk(data) for f in fs
                   if "__pycache__" not in d.split(os.sep))
    assert [f for f in files if f.endswith((".py", ".pyc"))] == ["__init__.py"]
    assert {"shipped_file", "path"} <= {n.name for n in ast.parse(open(os.path.join(data, "__init__.py")).read()).body
                                        if isinstance(n, ast.FunctionDef)}
    patterns = _package_data_patterns()
    assert not [f for f in files if f != "__init__.py" and not _is_package_data(f, patterns)]
    assert {"voc12/train_aug.txt", "voc12/cls_labels.npy", "get_mask_quality.sh"} <= set(files)
    # no second copy beside the package: a top-level voc12/ would shadow the shipped lists in a clone
    assert not os.path.exists(os.path.join(ROOT, "voc12"))


@pytest.mark.parametrize("path", [p for p in _files("advcam") if os.path.basename(p) not in
                                  ("run_sample.py", "obtain_cam_masking.py")], ids=os.path.basename)
def test_library_modules_do_not_import_passes(path):
    bad = {m for m in _imports(path) if m.startswith(("advcam.steps", "advcam.run_sample", "advcam.obtain_cam"))}
    assert not bad, f"{path} imports {sorted(bad)}: only the entry points import the passes"
