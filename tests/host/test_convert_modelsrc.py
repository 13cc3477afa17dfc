"""Host tier: loading the model to convert from every kind of source, and the ways it fails."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from toolchain.errors import InputFileError, ModelLoadError, UsageError
from toolchain.modelsrc import load_model, parse_shape

NETS = Path(__file__).resolve().parents[1] / "support" / "convert_nets.py"


class TwoIn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, image: torch.Tensor, extra: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"score": self.fc(image.flatten(1) + extra), "mean": image.mean((2, 3))}


def test_parse_shape() -> None:
    assert parse_shape("1,3,32,32") == (1, 3, 32, 32)
    assert parse_shape("1x640") == (1, 640)
    for bad in ("", "1,a", "1,-3", "0,3"):
        with pytest.raises(UsageError, match="is not a shape"):
            parse_shape(bad)


def test_factory_file_with_example_inputs_attribute() -> None:
    m = load_model(f"{NETS}:mobile_blocks")
    assert m.input_shapes == ((1, 3, 32, 32),)
    assert m.input_names == ("x",) and m.output_names == ("output",)
    assert m.output_shapes == ((1, 10),)
    assert not m.module.training


def test_in_memory_module_names_and_dict_outputs() -> None:
    m = load_model(TwoIn(), input_shapes=[(1, 1, 2, 2), (1, 4)])
    assert m.input_names == ("image", "extra")
    assert m.output_names == ("score", "mean")
    assert m.output_shapes == ((1, 2), (1, 1))


def test_dotted_module_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(
        "import torch\ndef make():\n    return torch.nn.Linear(8, 3), torch.zeros(1, 8)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    m = load_model("mypkg.nets:make")
    assert m.input_shapes == ((1, 8),)


def test_torchscript_export_and_weights(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    ts = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(net), str(ts))
    m = load_model(ts, input_shapes=[(1, 6)])
    assert m.output_shapes == ((1, 2),)

    pt2 = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(1, 6),)), str(pt2))
    m2 = load_model(pt2)  # example inputs come with the program
    assert m2.input_shapes == ((1, 6),)

    src = tmp_path / "arch.py"
    src.write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), "
        "torch.nn.Linear(4, 2))\n"
    )
    sd = tmp_path / "w.pt"
    torch.save({"state_dict": net.state_dict()}, sd)
    m3 = load_model(f"{src}:make", weights=sd, input_shapes=[(1, 6)])
    x = torch.randn(1, 6)
    torch.testing.assert_close(m3.module(x), net(x))


def test_weights_are_never_unpickled(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"model": nn.Linear(2, 2)}, evil)  # a pickled module needs full unpickling
    src = tmp_path / "arch.py"
    src.write_text("import torch\ndef make():\n    return torch.nn.Linear(2, 2)\n")
    with pytest.raises(ModelLoadError, match="refused: its pickle would call torch.nn"):
        load_model(f"{src}:make", weights=evil, input_shapes=[(1, 2)])
    # and a pickled nn.Module given as "the model" is refused, not loaded
    with pytest.raises(ModelLoadError, match=r"torch.save\(\) pickle .*not TorchScript"):
        load_model(evil, input_shapes=[(1, 2)])
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelLoadError, match="not a TorchScript file"):
        load_model(plain, input_shapes=[(1, 2)])


def test_weights_that_do_not_fit(tmp_path: Path) -> None:
    src = tmp_path / "arch.py"
    src.write_text("import torch\ndef make():\n    return torch.nn.Linear(2, 2)\n")
    wrong = tmp_path / "wrong.pt"
    torch.save(nn.Linear(3, 2).state_dict(), wrong)
    with pytest.raises(ModelLoadError, match="weights do not fit the model"):
        load_model(f"{src}:make", weights=wrong, input_shapes=[(1, 2)])
    partial = tmp_path / "partial.pt"
    torch.save({"weight": torch.zeros(2, 2), "extra": torch.zeros(1)}, partial)
    with pytest.raises(ModelLoadError, match="missing 1 .*bias.*unexpected 1 .*extra"):
        load_model(f"{src}:make", weights=partial, input_shapes=[(1, 2)])
    with pytest.raises(InputFileError, match="weights file not found"):
        load_model(f"{src}:make", weights=tmp_path / "none.pt", input_shapes=[(1, 2)])


@pytest.mark.parametrize(
    ("spec", "shapes", "error", "message"),
    [
        ("missing_file.py:make", None, ModelLoadError, "file not found"),
        ("model.onnx", None, InputFileError, "model not found"),
        (f"{NETS}:no_such_factory", None, ModelLoadError, "has no attribute 'no_such_factory'"),
        (
            f"{NETS}:raising_factory",
            None,
            ModelLoadError,
            "raised RuntimeError: checkpoint server unreachable",
        ),
        (f"{NETS}:up_net", None, UsageError, "input shape is unknown"),
        (
            f"{NETS}:mobile_blocks",
            [(1, 3, 30, 30)],
            UsageError,
            r"fails on input shape\(s\) \[1, 3, 30, 30\]",
        ),
        (f"{NETS}:mobile_blocks", [(1, 32, 32, 3)], UsageError, "check --input-shape"),
        (f"{NETS}:up_net", [(1, 1, 16, 16)], UsageError, "takes 2 input.* but 1"),
        (f"{NETS}:mobile_blocks", [(4, 3, 32, 32)], UsageError, "batch size must be 1"),
        ("no.such.module:make", None, ModelLoadError, "no module named 'no'"),
    ],
)
def test_bad_model_sources(
    spec: str, shapes: list[tuple[int, ...]] | None, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        load_model(spec, input_shapes=shapes)
