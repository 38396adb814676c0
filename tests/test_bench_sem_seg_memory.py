"""tools/bench_sem_seg_memory.py: the shapes behind make_sem_seg's memory bound, counted by hand, and one tiny phase."""
import argparse
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench():
    spec = importlib.util.spec_from_file_location("bench_sem_seg_memory",
                                                  os.path.join(ROOT, "tools", "bench_sem_seg_memory.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _pairs_by_hand(h: int, w: int) -> int:
    """Unordered pixel pairs of an h x w grid closer than 5 (the walk's radius): the half-plane directions
    (0, 1..4) and (1..4, -4..4) inside the open disc, each counted where both ends lie in the grid."""
    dirs = [(0, x) for x in range(1, 5)] + [(y, x) for y in range(1, 5) for x in range(-4, 5) if x * x + y * y < 25]
    assert len(dirs) == 34
    return sum((h - dy) * (w - abs(dx)) for dy, dx in dirs)


@pytest.mark.parametrize("size, grid", [((96, 128), (24, 32)), ((480, 640), (120, 160)), ((375, 500), (94, 125))])
def test_shape_facts(size, grid):
    f = _bench().shape_facts(size)
    h, w = grid
    assert f["grid"] == [h, w] and f["hw"] == h * w and f["n_dirs"] == 34
    assert f["nnz"] == h * w + 2 * _pairs_by_hand(h, w)  # the diagonal, and each pair both ways
    assert f["nnz_bound"] == h * w * 69 and f["nnz"] <= f["nnz_bound"]
    assert f["csr_bytes"] == f["nnz"] * 12 + (h * w + 1) * 8 and f["dense_bytes"] == (h * w) ** 2 * 4
    # the IRN pads to at least 512, to a multiple of 16: 640x480 -> 640 wide, 512 high
    assert f["irn_input"] == [max(512, -(-size[0] // 16) * 16), max(512, -(-size[1] // 16) * 16)]


def test_coco_size_by_hand():
    f = _bench().shape_facts((480, 640))
    assert f["hw"] == 19_200 and f["dense_bytes"] == 1_474_560_000 and f["irn_input"] == [512, 640]


def test_parse_size():
    b = _bench()
    assert b.parse_size("640x480") == (480, 640)
    for bad in ("640", "0x10", "axb"):
        with pytest.raises(argparse.ArgumentTypeError):
            b.parse_size(bad)


@pytest.mark.slow
def test_a_tiny_walk_phase():
    r = _bench().child("walk", (64, 96), 2, "cpu", None)
    assert r["phase"] == "walk" and r["size"] == [64, 96] and r["device"] == "cpu"
    # Linux's RSS counters are per-thread batches synced now and then (up to 64 pages a thread), so VmHWM, reset to
    # VmRSS just before the phase, may read a fraction of a MiB below the VmRSS read after it (seen: 0.1 MiB)
    assert r["rss_peak_mib"] >= r["rss_before_mib"] - 2 and r["rss_before_mib"] > 0
    assert r["process_peak_mib"] >= r["rss_peak_mib"]
    assert r["rss_increment_mib"] == pytest.approx(r["rss_peak_mib"] - r["rss_before_mib"])
