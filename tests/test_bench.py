"""The engine benchmark script: a tiny CPU run prints its table and a parseable last line."""
import importlib
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAST_LINE = re.compile(r"^fast/reference speed ratio: [0-9.]+x, max abs diff: ([0-9.e+-]+)$")


def _load_bench():
    """Import advcam.tools.bench_advcam (its CPU child processes import it by that name)."""
    return importlib.import_module("advcam.tools.bench_advcam")


@pytest.mark.slow
def test_bench_tiny_cpu_run(capsys):
    bench = _load_bench()
    out = bench.main(["--device", "cpu", "--size", "32x32", "--images", "1", "--classes", "1", "--adv_iter", "2",
                      "--scales", "1.0"])
    lines = capsys.readouterr().out.strip().splitlines()
    header = [i for i, line in enumerate(lines) if line.split()[:2] == ["engine", "s/image"]]
    assert header, "the table header is missing"
    rows = {line.split()[0] for line in lines[header[0] + 2:header[0] + 4]}
    assert rows == {"reference", "fast"}
    assert any(line.startswith("work per image:") for line in lines)
    assert any(line.startswith("peak: measured here") for line in lines)
    m = LAST_LINE.match(lines[-1])
    assert m, lines[-1]
    assert float(m.group(1)) <= 1e-4
    assert out["ratio"] > 0 and out["flops_per_image"] > 0


@pytest.mark.slow
def test_bench_amp_on_cpu_writes_json(tmp_path, capsys):
    """--amp runs on the CPU too (bf16 autocast of the fast engine: a code-path check) and --json holds the table."""
    bench = _load_bench()
    path = tmp_path / "bench.json"
    bench.main(["--device", "cpu", "--size", "32x32", "--images", "2", "--classes", "1", "--adv_iter", "2",
                "--scales", "1.0,2.0", "--amp", "--images_per_batch", "2", "--json", str(path)])
    out = capsys.readouterr().out
    assert "CPU --amp" in out
    data = json.loads(path.read_text())
    assert data["amp"] is True and data["device"] == "cpu" and data["scales"] == [1.0, 2.0]
    assert data["classes_per_image"] == [1, 1] and data["classes_mean"] == 1.0
    rows = data["engines"]
    assert set(rows) == {"reference", "fast", "fast-b2"}
    assert [rows[e]["precision"] for e in ("reference", "fast", "fast-b2")] == ["fp32", "bf16", "bf16"]
    assert [rows[e]["images_per_batch"] for e in ("reference", "fast", "fast-b2")] == [1, 1, 2]
    for row in rows.values():
        assert len(row["seconds"]) == 2 and row["sec_per_image"] == pytest.approx(sum(row["seconds"]) / 2)
        assert row["peak_mib"] >= row["base_mib"] > 0  # the child's peak RSS cannot be below its start
        assert row["reserved_mib"] is None  # a CUDA-only figure
    # bf16 really ran: the fast maps are not the float32 reference's, yet close (maps are max-normalised to 1)
    assert 0 < rows["fast"]["max_abs_diff_vs_reference"] < 0.1
    assert rows["fast-b2"]["max_abs_diff_vs_fast"] < 0.1
    assert rows["reference"]["max_abs_diff_vs_reference"] is None


@pytest.mark.slow
def test_bench_fp32_json_matches_the_table(tmp_path, capsys):
    bench = _load_bench()
    path = tmp_path / "bench.json"
    out = bench.main(["--device", "cpu", "--size", "32x32", "--images", "1", "--classes", "1", "--adv_iter", "1",
                      "--scales", "1.0", "--engine", "fast", "--max_batch_pixels", "1", "--json", str(path)])
    data = json.loads(path.read_text())
    assert data == out["json"] and data["amp"] is False and data["max_batch_pixels"] == 1
    assert list(data["engines"]) == ["fast"] and data["engines"]["fast"]["precision"] == "fp32"
    assert data["engines"]["fast"]["max_abs_diff_vs_reference"] is None
    assert data["flops_per_image"] == out["flops_per_image"] > 0
    row = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("fast ")][0]
    assert float(row[1]) == pytest.approx(data["engines"]["fast"]["sec_per_image"], abs=5e-4)  # printed to 3 places


@pytest.mark.slow
def test_bench_fast_only_prints_na(capsys):
    bench = _load_bench()
    bench.main(["--device", "cpu", "--size", "32x32", "--images", "1", "--classes", "1", "--adv_iter", "1",
                "--scales", "1.0", "--engine", "fast"])
    assert capsys.readouterr().out.strip().splitlines()[-1] == "fast/reference speed ratio: n/a, max abs diff: n/a"
