"""scripts/gpu_check.py: the tiny CPU mode runs every step and its JSON holds every figure, consistently; a failed
or timed-out step is recorded and the check goes on."""
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.py")
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _load():
    scripts = os.path.join(ROOT, "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    return importlib.import_module("gpu_check")


def _run(out, *flags, timeout=600):
    proc = subprocess.run([sys.executable, SCRIPT, "--out", str(out), *flags], cwd=ROOT, env=ENV, text=True,
                          capture_output=True, timeout=timeout)
    with open(os.path.join(out, "gpu_check.json")) as f:
        return proc, json.load(f)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out, work = tmp_path_factory.mktemp("gpu_check"), tmp_path_factory.mktemp("gpu_check_work")
    # a budget far above the tiny steps' needs, so that a busy machine cannot time a step out (the step limits are
    # meant for a GPU); the test checks what a finished run records, not how fast this machine is
    proc, report = _run(out, "--tiny", "--device", "cpu", "--work", str(work), "--budget_s", "3600", timeout=4200)
    return out, proc, report, work


@pytest.mark.slow
def test_tiny_run_completes_every_step(tiny):
    out, proc, report, work = tiny
    gc = _load()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report["finished"] is True and report["mode"] == "tiny"
    assert list(report["steps"]) == gc.STEP_NAMES
    for name, step in report["steps"].items():
        assert step["ok"], (name, step.get("error"))
        assert 0 < step["seconds"] <= step["limit_s"] + 5, name  # killed at its limit, so never much over it
        assert step["commands"] or name in gc.MULTI_GPU_STEPS, name  # those are skipped without 2 GPUs
    assert report["elapsed_s"] <= report["budget_s"] + 10
    assert sum(report["step_budgets_s"].values()) == pytest.approx(report["budget_s"])
    log = (out / "gpu_check.log").read_text()
    for name in gc.STEP_NAMES:
        assert f"[{name}] ok in " in log  # every step's elapsed time is printed
    assert "$ " + report["steps"]["bench_reference"]["commands"][0] in log  # with its command and output
    # the bulky files went to --work, the small ones stayed in --out
    assert (work / "toy" / "sess" / "res50_cam.pth").is_file() and not (out / "toy").exists()
    assert sorted(p.name for p in (out / "bench").iterdir()) == sorted(
        n + ".json" for n in gc.STEP_NAMES if n.startswith(("bench_", "mem_")))


@pytest.mark.slow
def test_tiny_benchmark_rows_and_projection(tiny):
    _, _, report, _ = tiny
    gc = _load()
    b = report["settings"]["images_per_batch"]
    rows = report["benchmark"]["rows"]
    fast = {(r["precision"], r["images_per_batch"]) for r in rows
            if r["engine"] == "fast" and r["step"] != "bench_reference"}
    assert fast == {("fp32", 1), ("fp32", b), ("bf16", 1), ("bf16", b)}
    assert any(r["engine"] == "reference" and r["precision"] == "fp32" for r in rows)
    for r in rows:
        raw = report["steps"][r["step"]]["figures"]["bench"]
        assert raw["scales"] == [1.0, 0.5, 1.5, 2.0] and raw["max_batch_pixels"] == gc.PIPELINE_MAX_BATCH_PIXELS
        seconds = raw["engines"][r["row"]]["seconds"]
        assert r["sec_per_image"] == pytest.approx(sum(seconds) / len(seconds)) and r["sec_per_image"] > 0
        assert r["sec_per_class"] == pytest.approx(r["sec_per_image"] / raw["classes_mean"])
    # the projection is images x s/image (scaled to VOC's classes per image) / 3600, from the JSON's own figures
    bf16 = [r for r in rows if r["step"] == "bench_fast_bf16"]
    best = min(bf16, key=lambda r: r["sec_per_image"])
    p = report["projection"]["best_bf16"]
    assert p["images"] == 10582 and p["sec_per_image"] == best["sec_per_image"]
    assert p["hours"] == pytest.approx(p["images"] * p["sec_per_image"] * p["classes_per_image_voc"]
                                       / p["classes_per_image_measured"] / 3600, rel=1e-12)
    assert "3600" in report["projection"]["formula"]
    sp = report["speed"]
    ref = next(r for r in rows if r["engine"] == "reference")
    assert sp["speedup_bf16_vs_reference"] == pytest.approx(ref["sec_per_class"] / best["sec_per_class"])
    assert sp["fp32_fast_vs_reference_max_abs_diff"] <= 1e-4  # float32 engines agree (tested in test_advcam too)


@pytest.mark.slow
def test_tiny_scale2_memory_toy_seeds_and_smoke(tiny):
    _, _, report, _ = tiny
    mem = report["peak_memory_scale2"]
    assert {(m["precision"], m["images_per_batch"]) for m in mem["rows"]} == {
        ("fp32", 1), ("fp32", report["settings"]["images_per_batch"]), ("bf16", 1),
        ("bf16", report["settings"]["images_per_batch"])}
    for m in mem["rows"]:
        assert m["scales"] == [2.0] and m["peak_mib"] > 0
    assert mem["max_peak_mib"] == max(m["peak_mib"] for m in mem["rows"])
    assert mem["chosen_config_peak_mib"] in [m["peak_mib"] for m in mem["rows"]]

    seeds = report["toy_seed_miou"]
    for key in ("fp32", "bf16"):
        assert 0 <= seeds[key] <= 100
    assert seeds["bf16_minus_fp32"] == pytest.approx(seeds["bf16"] - seeds["fp32"])
    assert seeds["images"] == report["settings"]["subset"] and seeds["same_files"]
    assert seeds["maps_max_abs_diff"] > 0  # --amp True really ran bf16: its maps are not the float32 ones

    smoke = report["torchrun_smoke"]
    assert smoke["ranks"] == 2 and smoke["images"] == report["settings"]["smoke_images"]
    assert smoke["same_files"] and smoke["all_files"] and smoke["keys_equal"] and smoke["close"]
    assert smoke["sharding"]["sharded"] is True  # each rank took a share, not the whole list
    assert sum(smoke["sharding"]["images_per_rank"].values()) == smoke["images"]
    assert smoke["identical"]  # on the CPU a sharded run gives the very same maps


@pytest.mark.slow
def test_tiny_verdict_follows_its_figures(tiny):
    _, _, report, _ = tiny
    v = report["verdict"]
    assert v["meaningful"] is False and "tiny" in v["note"]
    assert v["speed_10x_bf16"]["value"] == report["speed"]["speedup_bf16_vs_reference"]
    assert v["speed_10x_bf16"]["pass"] == (v["speed_10x_bf16"]["value"] >= 10)
    assert v["train_aug_under_1h"]["value"] == report["projection"]["best_bf16"]["hours"]
    assert v["train_aug_under_1h"]["pass"] == (v["train_aug_under_1h"]["value"] < 1)
    assert v["scale2_within_16GiB"]["value"] == report["peak_memory_scale2"]["chosen_config_peak_mib"]
    assert v["scale2_within_16GiB"]["pass"] == (v["scale2_within_16GiB"]["value"] <= 16 * 1024)
    passes = [v[k]["pass"] for k in ("speed_10x_bf16", "train_aug_under_1h", "scale2_within_16GiB")]
    assert v["all_targets_met"] == all(passes) and v["torchrun_smoke_ok"] is True


@pytest.mark.slow
def test_tiny_cuda_path_steps(tiny):
    """The steps that drive the passes' device handling ran (on the CPU here) and wrote what they should."""
    _, _, report, work = tiny
    gc = _load()
    s, steps = report["settings"], report["steps"]
    fig = {name: steps[name]["figures"] for name in gc.CUDA_PATH_STEPS}
    assert fig["cam_device_flag"] == {"device": "cpu", "images": 2, "files": 2}
    assert fig["make_cam_pass"] == fig["make_sem_seg_pass"] == {"images": s["smoke_images"], "files": s["smoke_images"]}
    assert "--device cpu" in steps["make_cam_pass"]["commands"][0]
    assert len(list((work / "passes" / "sem_seg").glob("*_palette.png"))) == s["smoke_images"]
    seg = fig["train_seg_steps"]
    assert seg["iterations"] == s["seg_iters"] and seg["network"] == s["seg_network"] and seg["finite"]
    for name in gc.MULTI_GPU_STEPS:
        assert fig[name] == {"skipped": "needs 2 or more GPUs, 0 visible"} and steps[name]["ok"]
    assert report["cuda_paths"] == {**{n: "ok" for n in gc.CUDA_PATH_STEPS if n not in gc.MULTI_GPU_STEPS},
                                    **{n: "skipped: needs 2 or more GPUs, 0 visible" for n in gc.MULTI_GPU_STEPS}}
    assert report["verdict"]["cuda_paths_ok"] is True


def test_cuda_path_summary():
    gc = _load()
    ok = {"ok": True, "figures": {"files": 2}}
    skipped = {"ok": True, "figures": {"skipped": "needs 2 or more GPUs, 1 visible"}}
    steps = {"cam_device_flag": ok, "make_cam_pass": {"ok": False, "error": "exit status 1"}, "ddp_nccl": skipped}
    assert gc.cuda_paths(steps) == {"cam_device_flag": "ok", "make_cam_pass": "exit status 1",
                                    "make_sem_seg_pass": "not run", "train_seg_steps": "not run",
                                    "multi_gpu_spawn": "not run",
                                    "ddp_nccl": "skipped: needs 2 or more GPUs, 1 visible"}
    assert gc.summarize(steps, tiny=True)["verdict"]["cuda_paths_ok"] is False
    steps["make_cam_pass"] = ok
    assert gc.summarize(steps, tiny=True)["verdict"]["cuda_paths_ok"] is True
    assert gc.summarize({"ddp_nccl": skipped}, tiny=True)["verdict"]["cuda_paths_ok"] is None  # nothing ran


def test_failed_and_timed_out_steps_are_recorded_and_the_check_goes_on(tmp_path):
    # mem_scale2_fp32 cannot finish in its 0.01 s (no Python process starts that fast, on any machine), toy_train_cam
    # has no toy set yet (fails at once), toy_data then runs with the rest of a generous budget
    proc, report = _run(tmp_path, "--tiny", "--device", "cpu", "--steps", "mem_scale2_fp32,toy_train_cam,toy_data",
                        "--budget_s", "600", "--step_budget", "mem_scale2_fp32=0.01", timeout=1200)
    assert proc.returncode == 1
    steps = report["steps"]
    assert list(steps) == ["mem_scale2_fp32", "toy_train_cam", "toy_data"]
    assert report["step_budgets_s"]["mem_scale2_fp32"] == 0.01 and report["budget_s"] == pytest.approx(600)
    assert not steps["toy_train_cam"]["ok"] and "toy_data" in steps["toy_train_cam"]["error"]
    assert not steps["mem_scale2_fp32"]["ok"] and "timed out" in steps["mem_scale2_fp32"]["error"]
    assert steps["mem_scale2_fp32"]["seconds"] < steps["mem_scale2_fp32"]["limit_s"] + 5
    assert not (tmp_path / "bench" / "mem_scale2_fp32.json").exists()
    assert steps["toy_data"]["ok"] and steps["toy_data"]["figures"]["subset"]
    assert report["finished"] and report["peak_memory_scale2"]["rows"] == []
    v = report["verdict"]
    assert v["scale2_within_16GiB"]["value"] is None and v["scale2_within_16GiB"]["pass"] is None
    assert v["all_targets_met"] is None
    assert "mem_scale2_fp32] FAILED: timed out" in (tmp_path / "gpu_check.log").read_text()


def _save(folder, name, keys, cam, high):
    from advcam.io import save_cam_npy
    save_cam_npy(os.path.join(folder, name + ".npy"), keys, torch.as_tensor(cam), torch.as_tensor(high))


def test_compare_cam_dirs_finds_differences(tmp_path):
    gc = _load()
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    rng = np.random.default_rng(0)
    cam, high = rng.random((2, 3, 4), dtype=np.float32), rng.random((2, 12, 16), dtype=np.float32)
    _save(a, "x", [3, 7], cam, high)
    _save(b, "x", [3, 7], cam, high)
    same = gc.compare_cam_dirs(str(a), str(b))
    assert same["same_files"] and same["keys_equal"] and same["identical"] and same["max_abs_diff"] == 0
    _save(b, "x", [3, 7], cam, high + 0.25 * (np.arange(16) == 5))
    moved = gc.compare_cam_dirs(str(a), str(b))
    assert moved["max_abs_diff_high_res"] == pytest.approx(0.25) and moved["max_abs_diff_cam"] == 0
    assert not moved["identical"]
    _save(b, "x", [3, 8], cam, high)
    assert gc.compare_cam_dirs(str(a), str(b))["keys_equal"] is False
    _save(a, "y", [1], cam[:1], high[:1])
    assert gc.compare_cam_dirs(str(a), str(b))["same_files"] is False


def test_sharding_evidence_reads_each_ranks_bar():
    gc = _load()
    bar = "AdvCAM (fast) [rank {r}, cpu]: {p}%|##| {d}/{t} [00:01<00:00]\r"
    split = {0: bar.format(r=0, p=0, d=0, t=3) + bar.format(r=0, p=100, d=3, t=3),
             1: bar.format(r=1, p=100, d=2, t=2)}
    assert gc.sharding_evidence(split, 5) == {"images_per_rank": {"0": 3, "1": 2}, "sharded": True}
    whole = {0: bar.format(r=0, p=100, d=5, t=5), 1: bar.format(r=1, p=100, d=5, t=5)}
    assert gc.sharding_evidence(whole, 5)["sharded"] is False
    assert gc.sharding_evidence({0: "no bar", 1: bar.format(r=1, p=100, d=2, t=2)}, 5)["sharded"] is None
