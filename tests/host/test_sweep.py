"""Host tier: the [sweep] table (axes over any project key, constraint sets, bad input with one
clear error), the Pareto fronts and recommendations, and the stage cache under concurrent
writers (StageStore: one builder per key across processes; commit swaps under a lock; the
leftover sweep keeps a live builder's folder). No Ray here: tests/emulated/test_sweep_ray.py."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from toolchain.cli import main
from toolchain.errors import ProjectFileError
from toolchain.pipeline import cache
from toolchain.project import load_project
from toolchain.sweep.pareto import front, recommend
from toolchain.sweep.spec import ConstraintSet, load_sweep

ROOT = Path(__file__).resolve().parents[2]
DEMO = (ROOT / "examples" / "digits" / "edgedeploy.toml").read_text()


def _project(tmp_path: Path, sweep: str) -> Path:
    for f in ("digits_model.py",):
        (tmp_path / f).write_text((ROOT / "examples" / "digits" / f).read_text())
    p = tmp_path / "edgedeploy.toml"
    p.write_text(DEMO + "\n" + sweep)
    return p


GOOD = """
[sweep]
cpus_per_point = 1
exclusive_targets = ["host-tflm"]

[sweep.axes]
prune.ratio = [0.25, 0.5]
quantization.activations = ["int8", "int16"]
bench.target = ["host-tflm", "mps2-an386"]

[[sweep.constraints]]
name = "small"
flash_max = 110000
accuracy_min = 95

[[sweep.constraints]]
name = "fast"
latency_max = 200
prefer = "latency"
"""


def test_grid_over_project_keys(tmp_path: Path) -> None:
    spec = load_sweep(_project(tmp_path, GOOD))
    assert [k for k, _ in spec.axes] == ["prune.ratio", "quantization.activations", "bench.target"]
    assert len(spec.points) == 8 and len({p.id for p in spec.points}) == 8
    last = spec.points[-1]
    assert dict(last.settings) == {
        "prune.ratio": 0.5,
        "quantization.activations": "int16",
        "bench.target": "mps2-an386",
    }
    proj = spec.project(last)  # validated like any project file
    assert proj.prune.ratio == 0.5 and proj.quantization.options.activations == "int16"
    assert proj.bench_target == "mps2-an386"
    assert spec.project(spec.points[0]).bench_target == "host-tflm"
    assert [c.name for c in spec.constraints] == ["small", "fast"]
    assert spec.constraints[0].bounds == (("accuracy", "min", 95.0), ("flash_bytes", "max", 110000.0))  # fmt: skip
    assert spec.dir == tmp_path / "out" / "sweep" and spec.store == spec.dir / "store"
    # ids are stable: the same settings name the same folder in the next sweep
    assert [p.id for p in load_sweep(tmp_path).points] == [p.id for p in spec.points]
    # `edgedeploy run` accepts (and ignores) the [sweep] table
    assert load_project(tmp_path).prune.ratio == 0.5


@pytest.mark.parametrize(
    ("axes", "expect"),
    [
        ("prune.ratoi = [0.1]", "unknown key 'ratoi'"),
        ("prune.ratio = [0.5, 1.5]", "prune.ratio=1.5 is not a valid project"),
        ('quantization.activations = ["int8", "int4"]', "int4"),
        ('bench.target = ["no-such-board"]', "no-such-board"),
        ("prunes.ratio = [0.1]", "'prunes' is not a table"),
        ("prune.ratio = 0.5", "expected a non-empty list"),
        ("prune.ratio = []", "expected a non-empty list"),
        ("prune.ratio = [0.5, 0.5]", "appears twice"),
    ],
)
def test_bad_axes_fail_at_load(tmp_path: Path, axes: str, expect: str) -> None:
    with pytest.raises(ProjectFileError, match=expect.replace("(", r"\(").replace(".", r"\.")):
        load_sweep(_project(tmp_path, f"[sweep.axes]\n{axes}\n"))


def test_bad_sweep_table(tmp_path: Path) -> None:
    with pytest.raises(ProjectFileError, match="no \\[sweep\\] table"):
        load_sweep(_project(tmp_path, ""))
    with pytest.raises(ProjectFileError, match="axes.*is required"):
        load_sweep(_project(tmp_path, "[sweep]\ncpus_per_point = 1\n"))
    with pytest.raises(ProjectFileError, match="unknown key 'latency_min'"):
        load_sweep(_project(tmp_path, "[sweep.axes]\nprune.ratio=[0.5]\n[sweep.constraints]\nlatency_min = 3\n"))  # fmt: skip
    with pytest.raises(ProjectFileError, match="'fastest' is not allowed"):
        load_sweep(_project(tmp_path, '[sweep.axes]\nprune.ratio=[0.5]\n[sweep.constraints]\nprefer = "fastest"\n'))  # fmt: skip


def test_cli_bad_table_exits_with_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    p = _project(tmp_path, "[sweep.axes]\nprune.ratio = [2.0]\n")
    assert main(["sweep", str(p)]) == 1
    err = capsys.readouterr().err
    assert "prune.ratio=2.0" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written
    assert main(["sweep", str(_project(tmp_path, GOOD)), "--list"]) == 0
    assert "bench.target=mps2-an386" in capsys.readouterr().out


def _pt(pid: str, acc: float | None, lat: float, flash: int, unit: str = "us") -> dict[str, object]:
    m = {
        "accuracy": acc,
        "latency": lat,
        "latency_unit": unit,
        "flash_bytes": flash,
        "ram_bytes": 1,
    }
    return {"id": pid, "status": "ok", "metrics": m}


def test_pareto_front_and_recommendations() -> None:
    pts = [
        _pt("a", 99.0, 300, 120_000),
        _pt("b", 98.0, 100, 100_000),
        _pt("c", 97.0, 150, 90_000),  # dominated in latency by b, not in flash
        _pt("d", 96.0, 400, 130_000),  # dominated everywhere
        _pt("e", None, 50, 10),  # no accuracy: on no front
        _pt("f", 90.0, 5, 10, unit="instructions"),  # other unit: not a latency rival
    ]
    assert front(pts, ("latency", "accuracy")) == ["f", "b", "a"]
    assert front(pts, ("flash_bytes", "accuracy")) == ["f", "c", "b", "a"]
    small = ConstraintSet("small", (("accuracy", "min", 97.0), ("flash_bytes", "max", 110_000.0)))
    assert recommend(pts, small) == {"constraints": small.to_dict(), "feasible": 2, "point": "b"}
    fast = ConstraintSet("fast", (("latency", "max", 200.0),), prefer="flash_bytes")
    assert recommend(pts, fast)["point"] == "f"
    assert recommend(pts, ConstraintSet("none", (("accuracy", "min", 99.5),)))["point"] is None
    failed = [{**pts[0], "status": "failed"}]
    assert recommend(failed, ConstraintSet("any"))["feasible"] == 0


# --- the stage cache under concurrent writers ---------------------------------------------------


def _build_once(root: str, folder: str, counter: str) -> None:
    """One 'run' needing stage 'prune' with key K: copy it from the store or build it."""
    store, dest, key = cache.StageStore(root), Path(folder), "k" * 64
    with store.claim("prune", key):
        if store.fetch("prune", key, dest) is None:
            with open(counter, "a") as fh:
                fh.write(f"{os.getpid()}\n")
            with cache.building(dest) as work:
                time.sleep(0.3)  # a slow build: the others must wait, not build too
                (work / "model.bin").write_bytes(b"x" * 1000)
                cache.commit(work, dest, key=key, record={"output": {}, "seconds": 0.3})
            store.publish("prune", key, dest)


def test_store_builds_each_key_once_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    counter = tmp_path / "builds.txt"
    procs = [
        ctx.Process(
            target=_build_once,
            args=(str(tmp_path / "store"), str(tmp_path / f"run{i}" / "prune"), str(counter)),
        )  # fmt: skip
        for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(counter.read_text().split()) == 1  # built once, copied three times
    for i in range(4):
        m = cache.lookup(tmp_path / f"run{i}" / "prune", "k" * 64)
        assert m is not None and m["files"]["model.bin"] == cache.sha256_file(tmp_path / f"run{i}/prune/model.bin")  # fmt: skip
    entries = list((tmp_path / "store" / "prune").iterdir())
    assert sorted(p.name for p in entries if not p.name.startswith(".")) == ["k" * 64]
    assert not [p for p in entries if ".building-" in p.name]


def _commit_many(folder: str, tag: str) -> None:
    dest = Path(folder)
    for i in range(15):
        with cache.building(dest) as work:
            (work / "a.txt").write_text(f"{tag}{i}")
            (work / "b.txt").write_text(f"{tag}{i}")
            cache.commit(work, dest, key=f"{tag}{i}", record={"output": {}})


def test_concurrent_commits_leave_one_complete_folder(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    dest = tmp_path / "out" / "convert"
    procs = [ctx.Process(target=_commit_many, args=(str(dest), t)) for t in "AB"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0  # no writer crashed on the other's swap
    a, b = (dest / "a.txt").read_text(), (dest / "b.txt").read_text()
    assert a == b and cache.lookup(dest, a) is not None  # one writer's whole folder
    assert sorted(p.name for p in dest.parent.iterdir()) == [".convert.lock", "convert"]


def test_sweep_keeps_a_live_builders_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with cache.building(out / "prune") as mine:
        dead = out / ".convert.building-oldhost_1-x"
        dead.mkdir()
        cache.sweep(out)  # another run starting in the same folder
        assert mine.is_dir() and not dead.exists()


def test_unreachable_cluster_fails_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    t0 = time.monotonic()
    assert main(["sweep", str(_project(tmp_path, GOOD)), "--address", f"127.0.0.1:{port}"]) == 2
    assert time.monotonic() - t0 < 30  # not Ray's minutes of retries
    assert "cannot reach the Ray cluster" in capsys.readouterr().err


def test_device_keys(tmp_path: Path) -> None:
    """Physical devices (serial/ADB/SSH) take one point at a time, keyed by the device; QEMU
    and host-tflm run in parallel unless listed in exclusive_targets."""
    from toolchain.sweep.engine import device_key, order

    axes = '[sweep.axes]\nbench.target = ["nucleo-l4r5zi", "rpi4", "mps2-an386", "host-tflm"]\n'
    spec = load_sweep(_project(tmp_path, axes + 'bench.port = ["socket://127.0.0.1:7"]\n'))
    keys = [device_key(spec, p) for p in spec.points]
    assert keys[0] == "serial:nucleo-l4r5zi:socket://127.0.0.1:7"
    assert keys[1] is not None and keys[1].startswith("ssh:rpi4")
    assert keys[2:] == [None, None]
    spec2 = load_sweep(_project(tmp_path, axes.replace("[sweep.axes]", '[sweep]\nexclusive_targets = ["host-tflm"]\n[sweep.axes]')))  # fmt: skip
    assert device_key(spec2, spec2.points[3]) == "host-tflm:host-tflm"
    # submission order: points that need different pruned models first
    grid8 = load_sweep(_project(tmp_path, GOOD))
    first = order(grid8, list(grid8.points))[:4]
    assert len({(dict(p.settings)["prune.ratio"], dict(p.settings)["quantization.activations"]) for p in first}) == 4  # fmt: skip
