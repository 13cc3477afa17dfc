"""The model zoo without the reference files: structure, Keras padding, digits training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolchain.errors import InputFileError, ModelLoadError, UsageError
from toolchain.zoo import folded_parameter_count, mlperf_tiny
from toolchain.zoo.keras_layers import SameConv2d, same_padding
from toolchain.zoo.weights import KerasLayer, assign, load_weights

# Parameter counts with BatchNorm folded, from the MLPerf Tiny reference README.
PUBLISHED = {
    "ds_cnn": (22_604, (1, 1, 49, 10), (1, 12)),
    "resnet8": (77_706, (1, 3, 32, 32), (1, 10)),
    "mobilenet_v1_025": (210_850, (1, 3, 96, 96), (1, 2)),
    "fc_autoencoder": (265_864, (1, 640), (1, 640)),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_ports_have_the_published_size_and_shapes(name: str) -> None:
    params, in_shape, out_shape = PUBLISHED[name]
    model = getattr(mlperf_tiny, name)()
    assert folded_parameter_count(model) == params
    (x,) = model.example_inputs
    assert tuple(x.shape) == in_shape
    with torch.no_grad():
        assert tuple(model(x).shape) == out_shape
    assert not model.training


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (32, 3, 1, (1, 1)),
        (32, 3, 2, (0, 1)),  # Keras puts the odd row at the bottom
        (33, 3, 2, (1, 1)),
        (32, 1, 2, (0, 0)),
        (49, 10, 2, (4, 5)),  # DS-CNN's first conv, rows
        (10, 4, 2, (1, 1)),  # ... and columns
        (96, 3, 2, (0, 1)),
    ],
)
def test_same_padding_matches_keras(size: int, kernel: int, stride: int, expected: tuple) -> None:
    assert same_padding(size, kernel, stride) == expected
    assert -(-size // stride) == (size + sum(expected) - kernel) // stride + 1


def test_same_conv_pads_asymmetrically_like_keras() -> None:
    torch.manual_seed(0)
    conv = SameConv2d(3, 4, 3, 2)
    x = torch.randn(1, 3, 32, 32)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2)
    symmetric = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1)
    out = conv(x)
    assert out.shape == (1, 4, 16, 16)
    assert torch.equal(out, expected)
    assert not torch.allclose(out, symmetric)  # PyTorch's padding=1 would be wrong


def test_folded_count_counts_bias_a_batchnorm_would_add() -> None:
    m = nn.Sequential(nn.Conv2d(2, 3, 1, bias=False), nn.BatchNorm2d(3), nn.Linear(4, 5))
    assert folded_parameter_count(m) == (2 * 3 + 3) + (4 * 5 + 5)


def test_wrong_weights_are_refused_and_nothing_is_half_loaded() -> None:
    model = mlperf_tiny.fc_autoencoder()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layers = [KerasLayer("dense", "Dense", {"kernel": np.zeros((640, 128), np.float32)})] * 3
    with pytest.raises(ModelLoadError, match="has 3 layers with weights, FCAutoencoder expects 10"):
        assign(model, layers)
    wrong = [
        KerasLayer(f"l{i}", "Dense", {"kernel": np.zeros((3, 3), np.float32)}) for i in range(10)
    ]
    with pytest.raises(ModelLoadError, match="shape mismatch"):
        assign(model, wrong)
    conv = [KerasLayer("c", "Conv2D", {"kernel": np.zeros((1, 1, 1, 1), np.float32)})] * 10
    with pytest.raises(ModelLoadError, match="does not fit Linear"):
        assign(model, conv)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_weights_file_errors(tmp_path) -> None:
    model = mlperf_tiny.resnet8()
    with pytest.raises(InputFileError, match="not found"):
        load_weights(model, tmp_path / "missing.h5")
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"not hdf5")
    with pytest.raises(InputFileError, match="not a Keras .h5"):
        load_weights(model, bogus)
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(InputFileError, match="unknown weights format"):
        load_weights(model, other)
    with pytest.raises(InputFileError, match="not a SavedModel"):
        load_weights(model, tmp_path)


def test_state_dict_round_trip(tmp_path) -> None:
    a = mlperf_tiny.ds_cnn()
    path = tmp_path / "ds_cnn.pt"
    torch.save(a.state_dict(), path)
    torch.manual_seed(123)
    b = mlperf_tiny.ds_cnn(weights=path)
    (x,) = a.example_inputs
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    with pytest.raises(ModelLoadError):
        mlperf_tiny.resnet8(weights=path)


def test_digits_trains_deterministically_and_well() -> None:
    from toolchain.zoo.digits import DigitsCNN, train_digits, trained

    a = train_digits(epochs=1)
    b = train_digits(epochs=1)
    for (k, va), vb in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(va, vb), k
    assert a.x_train.shape[1:] == (1, 8, 8) and a.x_train.dtype == np.float32
    assert len(a.x_train) + len(a.x_val) == 1797
    assert set(np.unique(a.y_val)) == set(range(10))
    assert a.x_train.min() >= 0.0 and a.x_train.max() <= 1.0
    full = trained()
    assert full.val_accuracy >= 0.95
    assert isinstance(full.model, DigitsCNN) and not full.model.training


def test_zoo_listing_matches_the_models() -> None:
    from toolchain import zoo
    from toolchain.zoo.digits import DigitsCNN

    for entry in zoo.ZOO:
        model = DigitsCNN() if entry.name == "digits" else zoo.build(entry.name)
        assert folded_parameter_count(model) == entry.params, entry.name
        assert tuple(model.example_inputs[0].shape) == entry.input_shape, entry.name
    with pytest.raises(UsageError, match="choose one of resnet8"):
        zoo.get("resnet9")


def test_save_weights_writes_a_loadable_state_dict(tmp_path) -> None:
    from toolchain import zoo

    src = tmp_path / "src.pt"
    torch.save(mlperf_tiny.fc_autoencoder().state_dict(), src)
    out = zoo.save_weights("fc_autoencoder", src, tmp_path / "ad.pt")
    state = torch.load(out, weights_only=True)
    assert set(state) == set(mlperf_tiny.fc_autoencoder().state_dict())
    with pytest.raises(UsageError, match="trains itself"):
        zoo.save_weights("digits", src, tmp_path / "d.pt")
    with pytest.raises(ModelLoadError):
        zoo.save_weights("resnet8", src, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_zoo_command_line(tmp_path, capsys) -> None:
    from toolchain.cli import main

    assert main(["zoo"]) == 0
    assert "toolchain.zoo.mlperf_tiny:resnet8" in capsys.readouterr().out
    src = tmp_path / "ds.pt"
    torch.save(mlperf_tiny.ds_cnn().state_dict(), src)
    out = tmp_path / "out.pt"
    assert main(["zoo", "weights", "ds_cnn", str(src), "--out", str(out)]) == 0
    assert out.is_file() and "--weights" in capsys.readouterr().out
    assert main(["zoo", "weights", "resnet8", str(src), "--out", str(tmp_path / "x.pt")]) == 1
    assert main(["zoo", "weights", "nope", str(src), "--out", str(tmp_path / "y.pt")]) == 2
    assert (
        main(
            [
                "zoo",
                "weights",
                "ds_cnn",
                str(tmp_path / "missing.h5"),
                "--out",
                str(tmp_path / "z.pt"),
            ]
        )
        == 1
    )
    assert not any((tmp_path / n).exists() for n in ("x.pt", "y.pt", "z.pt"))
