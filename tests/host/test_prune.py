"""Structured/unstructured pruning, fine-tuning, sensitivity: no conversion (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from tests.support.prune_nets import SmallCNN, hard_coded_net, mixed_net
from toolchain.cli import main
from toolchain.errors import DataError, PruneError
from toolchain.prune import FinetuneOptions, prune_model, sensitivity
from toolchain.prune.stats import count_macs, count_params
from toolchain.prune.structured import keep_count


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    """Tiny nets train ~20× faster on one thread than on two contended cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


@pytest.fixture(scope="session")
def digits_cnn(digits: tuple[np.ndarray, ...]) -> SmallCNN:
    """A SmallCNN trained on the digits for a few epochs (≈97% validation accuracy)."""
    from toolchain.prune.data import Dataset
    from toolchain.prune.finetune import finetune

    torch.manual_seed(0)
    model = SmallCNN()
    finetune(model, Dataset(digits[0], digits[1]), options=FinetuneOptions(epochs=6, lr=3e-3))
    return model.eval()


def test_mixed_net_structured_prune_runs_and_shrinks() -> None:
    model = mixed_net().train()  # training mode: BatchNorm stats must not move either
    before = _state(model)
    x = torch.randn(2, 3, 16, 16)
    res = prune_model(model, ratio=0.5, round_to=4, keep_first=False, keep_last=False)
    rep = res.report
    # the input model is untouched
    assert _same(before, _state(model)) and model.training
    model.eval()
    # runnable, same output shape, and the figures are the real ones
    out = res.model(x)
    assert out.shape == model(x).shape == (2, 10)
    assert rep["params_after"] == count_params(res.model) < rep["params_before"]
    assert rep["macs_after"] == count_macs(res.model, res.example_inputs) < rep["macs_before"]
    assert rep["params_after"] < 0.45 * rep["params_before"]
    # residual: stem and the block's last conv are coupled and keep equal channel counts
    layers = rep["layers"]
    assert layers["stem.0"]["out_after"] == layers["block.3"]["out_after"] == 8
    # depthwise follows the expand conv; SE gate follows both; concat halves per branch
    assert layers["dw.0"]["out_after"] == layers["expand.0"]["out_after"] == 16
    assert layers["se.fc2"]["out_after"] == 16
    assert layers["branch_a"]["out_after"] == layers["branch_b"]["out_after"] == 8
    assert layers["head"]["in_after"] == layers["mix.0"]["out_after"] == 16
    assert layers["head"]["out_after"] == 10  # output layer kept
    assert rep["kept_layers"]["output"] == ["head"]
    assert all(g["channels_after"] % 4 == 0 for g in rep["groups"])


def test_keep_first_last_and_user_keep() -> None:
    model = mixed_net()
    res = prune_model(model, ratio=0.5, keep=["branch_a"], keep_first=True, keep_last=True)
    kept = res.report["kept_layers"]
    assert kept["first"] == ["stem.0"]
    assert sorted(kept["last"]) == ["mix.0"]
    layers = res.report["layers"]
    for name in ("stem.0", "block.3", "mix.0", "branch_a"):
        assert layers[name]["out_after"] == layers[name]["out_before"], name
    assert layers["expand.0"]["out_after"] < layers["expand.0"]["out_before"]


def test_layer_ratios_and_global_ranking() -> None:
    model = mixed_net()
    res = prune_model(model, ratio=0.0, layer_ratios={"block.0": 0.75}, keep_first=False)
    layers = res.report["layers"]
    assert layers["block.0"]["out_after"] == 4
    assert layers["expand.0"]["out_after"] == layers["expand.0"]["out_before"]
    glob = prune_model(model, ratio=0.5, global_ranking=True, keep_first=False)
    assert glob.report["params_after"] < glob.report["params_before"]
    assert glob.model(torch.randn(1, 3, 16, 16)).shape == (1, 10)


@pytest.mark.parametrize("importance", ["l2", "bn_scale", "random"])
def test_other_importances(importance: str) -> None:
    res = prune_model(mixed_net(), ratio=0.5, importance=importance)
    assert res.report["params_after"] < res.report["params_before"]


def test_keep_count_rounding() -> None:
    assert keep_count(16, 0.5, None) == 8
    assert keep_count(16, 0.75, 8) == 8  # 4 rounds up to one multiple of 8
    assert keep_count(64, 0.5, 8) == 32
    assert keep_count(20, 0.5, 8) == 8  # 10 → nearest multiple of 8
    assert keep_count(4, 0.5, 8) == 4  # smaller than round_to: left whole
    assert keep_count(3, 0.9, None) == 1


def test_unstructured_is_reported_honestly() -> None:
    model = mixed_net()
    res = prune_model(model, ratio=0.5, method="unstructured")
    rep = res.report
    assert rep["params_after"] == rep["params_before"]
    assert rep["macs_after"] == rep["macs_before"]
    assert rep["nonzero_params_after"] < 0.7 * rep["nonzero_params_before"]
    assert "dense" in rep["note"]
    assert rep["layers"]["expand.0"]["out_after"] == rep["layers"]["expand.0"]["out_before"]


def test_project_and_cli_choices_mirror_the_library() -> None:
    """toolchain.project keeps torch-free copies of the pruning choices (the project file and
    the CLI's parser validate with them); they must be the library's."""
    from toolchain import project
    from toolchain.prune import core, finetune, output, structured

    assert project.PRUNE_METHODS == core.METHODS
    assert project.PRUNE_IMPORTANCE == structured.IMPORTANCES
    assert project.FINETUNE_LOSSES == finetune.LOSSES
    assert tuple(output.FORMATS) == project.MODEL_FORMATS


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_ratio_out_of_range(ratio: float) -> None:
    with pytest.raises(PruneError, match=r"outside \[0, 1\)"):
        prune_model(mixed_net(), ratio=ratio)


def test_unknown_layer_lists_prunable() -> None:
    with pytest.raises(PruneError, match="no prunable layer named 'nope'") as e:
        prune_model(mixed_net(), ratio=0.5, keep=["nope"])
    assert e.value.hint is not None and "branch_a" in e.value.hint
    with pytest.raises(PruneError, match="are protected"):
        prune_model(mixed_net(), ratio=0.5, layer_ratios={"head": 0.5})


def test_untraceable_model_names_the_op_and_line() -> None:
    model = hard_coded_net()
    before = _state(model)
    with pytest.raises(PruneError, match="no longer runs") as e:
        prune_model(model, ratio=0.5, keep_first=False, keep_last=False)
    assert "prune_nets.py" in e.value.message and "reshape" in e.value.message
    assert _same(before, _state(model))


def test_model_that_does_not_run_on_its_inputs() -> None:
    with pytest.raises(PruneError, match="does not run on inputs of shape 1×1×8×8"):
        prune_model(mixed_net(), ratio=0.5, input_shapes=[(1, 1, 8, 8)])


def test_finetune_data_shape_mismatch(digits: tuple[np.ndarray, ...]) -> None:
    model = SmallCNN()
    with pytest.raises(
        DataError, match=r"samples have shape \(1, 8\) but the model takes \(1, 8, 8\)"
    ):
        prune_model(model, ratio=0.5, train=(digits[0][:, :, 0], digits[1]))
    with pytest.raises(DataError, match=r"labels must be one class id per sample in \[0, 10\)"):
        prune_model(model, ratio=0.5, train=(digits[0], digits[1] + 5))
    with pytest.raises(DataError, match="1400 inputs but 10 labels"):
        prune_model(model, ratio=0.5, train=(digits[0], digits[1][:10]))


def test_finetune_recovers_accuracy(digits: tuple[np.ndarray, ...], digits_cnn: SmallCNN) -> None:
    xt, yt, xv, yv = digits
    before = _state(digits_cnn)
    res = prune_model(
        digits_cnn,
        ratio=0.5,
        train=(xt, yt),
        val=(xv, yv),
        finetune_options=FinetuneOptions(epochs=3),
    )
    m = res.report["metric"]
    assert m["name"] == "accuracy"
    assert m["before"] > 0.9
    assert m["after"] > m["after_prune"]  # the loop really trained
    assert m["after"] > m["before"] - 0.1
    assert res.report["finetune"]["loss"] == "ce"
    assert _same(before, _state(digits_cnn))


def test_batchnorm_recalibration_uses_the_data() -> None:
    from toolchain.prune.finetune import recalibrate_batchnorm

    bn = torch.nn.BatchNorm1d(4, momentum=0.01)
    model = torch.nn.Sequential(bn).eval()
    x = torch.randn(512, 4, generator=torch.Generator().manual_seed(0)) * 2 + 3
    recalibrate_batchnorm(model, x, batch_size=512)  # one batch: exactly the data's statistics
    assert torch.allclose(bn.running_mean, x.mean(0), atol=1e-4)
    assert torch.allclose(bn.running_var, x.var(0), rtol=1e-2)
    assert bn.momentum == 0.01


def test_taylor_and_callback(digits: tuple[np.ndarray, ...], digits_cnn: SmallCNN) -> None:
    calls: list[int] = []

    def cb(model: torch.nn.Module) -> torch.nn.Module:
        calls.append(count_params(model))
        return model

    res = prune_model(
        digits_cnn, ratio=0.5, importance="taylor", train=(digits[0], digits[1]), callback=cb
    )
    assert calls == [res.report["params_after"]]
    assert res.report["finetune"]["kind"] == "callback"
    with pytest.raises(PruneError, match="taylor importance needs training data"):
        prune_model(digits_cnn, ratio=0.5, importance="taylor")


def test_distill_without_labels(digits: tuple[np.ndarray, ...], digits_cnn: SmallCNN) -> None:
    res = prune_model(
        digits_cnn,
        ratio=0.5,
        train=digits[0][:256],
        val=digits[2],
        finetune_options=FinetuneOptions(epochs=2),
    )
    m = res.report["metric"]
    assert res.report["finetune"]["loss"] == "distill"
    assert m["name"] == "sqnr_db" and m["before"] is None  # identical to itself
    assert m["after"] > m["after_prune"]


def test_sensitivity_table_and_plot(digits: tuple[np.ndarray, ...], digits_cnn: SmallCNN) -> None:
    s = sensitivity(digits_cnn, val=(digits[2], digits[3]), ratios=(0.5, 0.9))
    roots = [r["root"] for r in s.rows]
    assert roots and "head" not in roots
    assert s.metric == "accuracy" and s.baseline is not None
    for row in s.rows:
        assert len(row["metric"]) == 2 and row["channels_kept"][1] < row["channels"]
    assert sorted(s.most_sensitive()) == sorted(roots)
    import matplotlib

    backend = matplotlib.get_backend()
    matplotlib.use("pdf")
    try:
        assert s.plot_png().startswith(b"\x89PNG")
        assert matplotlib.get_backend() == "pdf"  # the caller's backend is left alone
    finally:
        matplotlib.use(backend)


# --- the command ---------------------------------------------------------------------------

MIXED = "tests/support/prune_nets.py:mixed_net"


def test_cli_prune_writes_model_report_and_sensitivity(
    tmp_path: Path, digits: tuple[np.ndarray, ...]
) -> None:
    from toolchain.modelsrc import load_model

    x = np.random.default_rng(0).standard_normal((32, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "val.npz", x=x)
    out = tmp_path / "out"
    rc = main(
        ["-q", "prune", MIXED, "--ratio", "0.5", "--round-to", "4", "--format", "torchscript"]
        + ["--val", str(tmp_path / "val.npz"), "--sensitivity", "0.5", "--out", str(out)]
    )
    assert rc == 0
    rep = json.loads((out / "prune_report.json").read_text())
    assert rep["params_after"] < rep["params_before"] and rep["macs_after"] < rep["macs_before"]
    assert rep["layers"]["head"]["in_after"] < rep["layers"]["head"]["in_before"]
    assert rep["sensitivity"]["metric"] == "sqnr_db" and rep["sensitivity"]["groups"]
    assert (out / "sensitivity.png").read_bytes().startswith(b"\x89PNG")
    loaded = load_model(str(out / "model_pruned.pt"), input_shapes=[(1, 3, 16, 16)])
    assert loaded.output_shapes == ((1, 10),)
    assert sum(p.numel() for p in loaded.module.parameters()) == rep["params_after"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ratio", "1"], "outside [0, 1)"),
        (["--ratio", "0.5", "--keep", "nope"], "prunable layers: stem.0"),
        (["--ratio", "0.5", "--layer-ratio", "head=0.5"], "are protected"),
        (["--ratio", "0.5", "--train", "BADTRAIN"], "samples have shape (3, 8, 8)"),
    ],
)
def test_cli_bad_input_exits_nonzero_and_writes_nothing(
    tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "train.npz"
    np.savez(bad, x=np.zeros((4, 3, 8, 8), np.float32), y=np.zeros(4, np.int64))
    extra = [str(bad) if a == "BADTRAIN" else a for a in extra]
    out = tmp_path / "out"
    rc = main(["-q", "prune", MIXED, *extra, "--out", str(out)])
    assert rc == 1
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert not out.exists()


def test_cli_untraceable_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    spec = "tests/support/prune_nets.py:hard_coded_net"
    rc = main(["-q", "prune", spec, "--ratio", "0.5", "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "no longer runs" in err and "prune_nets.py" in err and "reshape" in err
    assert not out.exists()


class _DataDependent(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if y.sum() > 0 else -y


def test_export_failure_is_one_message_not_a_graph_dump(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from toolchain.prune.output import model_bytes

    with pytest.raises(PruneError, match="cannot save the pruned model as pt2") as e:
        model_bytes(_DataDependent(), (torch.zeros(1, 1, 8, 8),), "pt2")
    assert "test_prune.py" in e.value.message and e.value.hint is not None
    assert "def forward" not in capfd.readouterr().err


def test_cli_nothing_to_do_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["-q", "prune", MIXED, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nothing to do" in err and "--ratio R, a budget" in err
    assert not out.exists()
