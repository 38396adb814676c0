"""The engine benchmark script: a tiny CPU run prints its table and a parseable last line."""
import importlib
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAST_LINE = re.compile(r"^fast/reference speed ratio: [0-9.]+x, max abs diff: ([0-9.e+-]+)$")


def _load_bench():
    """Import scripts/bench_advcam.py by name (its CPU child processes import it by that name)."""
    scripts = os.path.join(ROOT, "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    return importlib.import_module("bench_advcam")


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


def test_bench_refuses_amp_on_cpu(capsys):
    bench = _load_bench()
    with pytest.raises(SystemExit):
        bench.main(["--device", "cpu", "--amp"])
    assert "--amp" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_fast_only_prints_na(capsys):
    bench = _load_bench()
    bench.main(["--device", "cpu", "--size", "32x32", "--images", "1", "--classes", "1", "--adv_iter", "1",
                "--scales", "1.0", "--engine", "fast"])
    assert capsys.readouterr().out.strip().splitlines()[-1] == "fast/reference speed ratio: n/a, max abs diff: n/a"
