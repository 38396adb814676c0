"""The layering of the package, read from the import statements of every source file.

passes (advcam/steps) never import each other; scripts and tools never import pass internals; the data layer
(advcam/voc12) and the base modules never import the loops, the passes or the entry points."""
import ast
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


@pytest.mark.parametrize("path", _files("scripts") + _files("tools"), ids=os.path.basename)
def test_scripts_do_not_import_passes(path):
    bad = {m for m in _imports(path) if m.startswith(("advcam.steps", "advcam.run_sample", "advcam.obtain_cam"))}
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


def test_the_voc12_folder_holds_data_only():
    assert not [f for f in os.listdir(os.path.join(ROOT, "voc12")) if f.endswith(".py")]


@pytest.mark.parametrize("path", [p for p in _files("advcam") if os.path.basename(p) not in
                                  ("run_sample.py", "obtain_cam_masking.py")], ids=os.path.basename)
def test_library_modules_do_not_import_passes(path):
    bad = {m for m in _imports(path) if m.startswith(("advcam.steps", "advcam.run_sample", "advcam.obtain_cam"))}
    assert not bad, f"{path} imports {sorted(bad)}: only the entry points import the passes"
