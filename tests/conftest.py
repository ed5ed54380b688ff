import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MAGENTA = SHARED / "magenta"

# two threads for a serial run; one per worker under pytest-xdist (make test runs two on two cores),
# and one for the commands the tests run (run_cli): two busy workers already hold both cores, so an
# export there is serial (export_bundle's parallel=None needs two threads) instead of spawning a
# third busy process; the worker path is tested with parallel=True (tests/reliability)
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
else:
    torch.set_num_threads(2)


# The test files that take longest, longest first (seconds of one 2-worker run at ba7c514: export 322,
# executorch 259, demo 200, bundle_faults 171, ... benchmarks/results/test_runs.json, "by_file").
# `make test` runs pytest-xdist with --dist loadfile --no-loadscope-reorder, so files are handed to
# the two workers in this order (then the rest in collection order): the long ones start first and
# the short ones fill the end. xdist's own order (most tests first) left the demo's file for last and
# one worker idle for about 100 s (a simulation of its scheduler on that run's durations: 1078 s
# against 997 s this way; the one fresh-clone run since, 4c1ea07, was not faster on the shared box).
HEAVY_FIRST = ("test_export.py", "test_executorch.py", "test_demo.py", "reliability/test_bundle_faults.py",
               "test_tflite_xnnpack.py", "test_coreml_mil.py", "test_int8_choice.py", "test_quantization.py",
               "test_stylize.py", "test_int8_floor.py", "test_train.py", "test_coreml_nn.py",
               "test_fp16_emulation.py", "test_parity.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    tests = Path(__file__).resolve().parent

    def key(item):
        try:
            rel = Path(str(item.path)).resolve().relative_to(tests).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(rel, len(rank))
    items.sort(key=key)   # stable: collection order within a file and among the rest


def run_cli(*args, cwd=None, timeout=900, env=None):
    """Run the real `styleport` command in a subprocess; returns CompletedProcess (text). ``env``:
    extra environment variables."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env or {}))
    return subprocess.run([sys.executable, "-m", "styleport", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)


def assert_one_line_error(proc, code=2, contains=None):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("styleport")]
    assert lines, err
    if contains:
        assert contains.lower() in err.lower(), err


def assert_one_xnnpack_partition(path, details, label):
    """A fp32 TFLite transformer runs whole in one XNNPACK partition, nothing left to the builtin
    kernels: reflection padding as slices (no REVERSE_V2), nearest upsampling rewritten to
    DEPTH_TO_SPACE (``details``: the exporter's), no TRANSPOSE. test_export checks every preset's
    exported transformer with it; test_tflite_xnnpack covers the older forms that fall back."""
    from styleport.runtime.runners import litert_profile as LP
    from styleport.runtime.runners.registry import make_runner
    with make_runner("litert", path, threads=1) as r:
        cov = LP.delegation(r.it)
    assert cov["partitions"] == 1 and cov["fallback"] == {} and cov["delegated"] == cov["ops"], (label, cov)
    assert "REVERSE_V2" not in cov["op_types"] and "RESIZE_NEAREST_NEIGHBOR" not in cov["op_types"]
    assert "TRANSPOSE" not in cov["op_types"], (label, cov["op_types"])
    assert cov["op_types"]["DEPTH_TO_SPACE"] == 2 and details["rewrites"]["nearest_upsample_as_depth_to_space"] == 2


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory):
    """A folder every pytest-xdist worker of this run sees (the workers' common temp root; a serial
    run's own temp folder): files that several test files need and that cost a conversion are built
    there once per run, under a lock (tiny.built_once), not once per worker."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def magenta_fp32(shared_tmp):
    """(checkpoint, bundle): magenta-mobile at width 0.25 (seed 3) and its ONNX + TFLite fp32 export
    at 64 px (style 64), built once per run (tiny.built_once) for test_stylize and
    test_layerwise_torch. Read-only: a test that changes a file copies it first."""
    from styleport.export.bundle import export_bundle
    from styleport.models.checkpoint import save_checkpoint
    from styleport.models.presets import build, default_config
    from tiny import built_once

    def make(folder):
        cfg = default_config("magenta-mobile", width=0.25)
        torch.manual_seed(3)
        ck = save_checkpoint(build(cfg), cfg, folder / "ck")
        export_bundle(ck, folder / "bundle", ["onnx", "tflite"], ["fp32"], size=64, style_size=64, progress=False,
                      force=True)
    folder = built_once(shared_tmp / "magenta-fp32", make)
    return folder / "ck", folder / "bundle"


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory):
    from styleport.samples import content_scene, style_pattern
    d = tmp_path_factory.mktemp("samples")
    content_scene(96).save(d / "content.png")
    content_scene(80, seed=1).resize((112, 80)).save(d / "content_wide.png")
    for name in ("swirl", "stripes"):
        style_pattern(name, 96).save(d / f"{name}.png")
    return d


@pytest.fixture
def magenta_dir():
    if not (MAGENTA / "style_transfer_f16_384.tflite").exists():
        pytest.skip("../shared/data/magenta is absent (optional third-party data)")
    return MAGENTA
