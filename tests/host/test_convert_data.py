"""Host tier: calibration/validation data sources and every way they can be wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolchain.data import ImageFolder, fingerprint, load_data, load_labels
from toolchain.errors import DataError, InputFileError

IMG = [("x", (1, 3, 8, 8))]
TWO = [("img", (1, 3, 8, 8)), ("vec", (1, 5))]


def test_arrays_lists_and_mappings(tmp_path: Path) -> None:
    a = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    v = np.ones((4, 5), np.float64)
    assert len(load_data(a, inputs=IMG)) == 4
    ds = load_data([a, v], inputs=TWO)
    assert ds.arrays[1].dtype == np.float32 and ds.sample(2)[0].shape == (1, 3, 8, 8)
    ds = load_data({"vec": v, "img": a}, inputs=TWO)
    assert ds.arrays[0].shape == (4, 3, 8, 8)
    # a single sample without the sample axis is one sample
    assert len(load_data(a[0], inputs=IMG)) == 1
    assert len(load_data(a, inputs=IMG, limit=3)) == 3


def test_npy_and_npz_by_name_and_by_order(tmp_path: Path) -> None:
    a = np.zeros((2, 3, 8, 8), np.float32)
    v = np.zeros((2, 5), np.float32)
    np.save(tmp_path / "a.npy", a)
    assert len(load_data(tmp_path / "a.npy", inputs=IMG)) == 2
    np.savez(tmp_path / "named.npz", vec=v, img=a, labels=np.zeros(2))
    assert load_data(str(tmp_path / "named.npz"), inputs=TWO).arrays[1].shape == (2, 5)
    np.savez(tmp_path / "ordered.npz", a, v)
    assert load_data(str(tmp_path / "ordered.npz"), inputs=TWO).arrays[0].shape == (2, 3, 8, 8)
    np.savez(tmp_path / "wrong.npz", foo=a, bar=v, baz=v)
    with pytest.raises(DataError, match="do not match the model inputs img, vec"):
        load_data(str(tmp_path / "wrong.npz"), inputs=TWO)


def test_image_folder_resizes_normalises_and_labels(tmp_path: Path) -> None:
    for cls, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.new("RGB", (20, 12), color).save(tmp_path / cls / f"{i}.png")
    ds = load_data(ImageFolder(tmp_path, mean=(0.5,), std=(0.5,)), inputs=IMG)
    assert ds.arrays[0].shape == (4, 3, 8, 8)
    np.testing.assert_allclose(ds.arrays[0][0, :, 0, 0], [1.0, -1.0, -1.0])  # red, CHW
    assert ds.labels is not None and ds.labels.tolist() == [0, 0, 1, 1]
    gray = load_data(str(tmp_path), inputs=[("x", (1, 1, 4, 4))])
    assert gray.arrays[0].shape == (4, 1, 4, 4)
    with pytest.raises(DataError, match="one .1, C, H, W. input"):
        load_data(str(tmp_path), inputs=TWO)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_data(str(tmp_path / "empty"), inputs=IMG)


def test_function_yielding_samples_or_batches(tmp_path: Path) -> None:
    src = tmp_path / "mydata.py"
    src.write_text(
        "import numpy as np\n"
        "def batches():\n"
        "    for i in range(3):\n"
        "        yield np.full((2, 3, 8, 8), i, np.float32)\n"
        "def pairs():\n"
        "    for i in range(4):\n"
        "        yield np.zeros((3, 8, 8)), np.zeros((5,))\n"
        "def nothing():\n"
        "    return iter([])\n"
        "def broken():\n"
        "    raise OSError('disk gone')\n"
    )
    assert len(load_data(f"{src}:batches", inputs=IMG)) == 6
    assert len(load_data(f"{src}:pairs", inputs=TWO)) == 4
    with pytest.raises(DataError, match="yielded nothing"):
        load_data(f"{src}:nothing", inputs=IMG)
    with pytest.raises(DataError, match="raised OSError: disk gone"):
        load_data(f"{src}:broken", inputs=IMG)
    with pytest.raises(DataError, match="has no attribute 'missing'"):
        load_data(f"{src}:missing", inputs=IMG)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 3, 8, 7), np.float32), r"shape \(4, 3, 8, 7\); expected \(N, 3, 8, 8\)"),
        (np.zeros((4, 8, 8, 3), np.float32), r"expected \(N, 3, 8, 8\)"),
        (np.zeros((0, 3, 8, 8), np.float32), "is empty"),
        (np.array(["a", "b"]), "dtype <U1; numbers are needed"),
        (np.zeros((2, 3, 8, 8), np.complex64), "numbers are needed"),
    ],
)
def test_bad_data_is_refused_with_what_was_wrong(array: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_data(array, inputs=IMG)


def test_nan_and_inf_name_the_first_bad_sample() -> None:
    a = np.zeros((5, 3, 8, 8), np.float32)
    a[3, 1, 2, 2] = np.nan
    with pytest.raises(DataError, match="1 NaN value.*first in sample 3"):
        load_data(a, inputs=IMG, what="calibration data")
    a[3, 1, 2, 2] = 0
    a[1, 0, 0, 0] = np.inf
    a[4, 0, 0, 0] = -np.inf
    with pytest.raises(DataError, match="2 inf value.*first in sample 1"):
        load_data(a, inputs=IMG)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        load_data(str(tmp_path / "nope.npy"), inputs=IMG)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="cannot read .* as a numpy array"):
        load_data(str(tmp_path / "bad.npy"), inputs=IMG)
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match="unknown data file type '.csv'"):
        load_data(str(tmp_path / "x.csv"), inputs=IMG)
    with pytest.raises(DataError, match="2 array.* for a model with 1 input"):
        load_data([np.zeros((1, 3, 8, 8))] * 2, inputs=IMG)


def test_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "l.npy", np.array([0, 2, 1]))
    assert load_labels(str(tmp_path / "l.npy"), n=3).tolist() == [0, 2, 1]
    (tmp_path / "l.txt").write_text("1\n0\n2\n")
    assert load_labels(str(tmp_path / "l.txt"), n=3).tolist() == [1, 0, 2]
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4)), y=np.array([2, 2, 0]))
    assert load_labels(f"{tmp_path / 'd.npz'}:y", n=3).tolist() == [2, 2, 0]
    assert load_labels(np.eye(3)[[1, 0, 2]], n=3).tolist() == [1, 0, 2]  # one-hot
    with pytest.raises(DataError, match="3 labels for 4 validation samples"):
        load_labels([0, 1, 2], n=4)
    with pytest.raises(DataError, match="whole numbers"):
        load_labels([0.5, 1, 2], n=3)
    with pytest.raises(DataError, match="negative"):
        load_labels([-1, 1, 2], n=3)


def test_fingerprint_follows_content(tmp_path: Path) -> None:
    p = tmp_path / "c.npy"
    np.save(p, np.zeros((2, 3)))
    f1 = fingerprint(str(p))
    np.save(p, np.ones((2, 3)))
    assert fingerprint(str(p)) != f1
    assert fingerprint(np.zeros(3)) == fingerprint(np.zeros(3)) != fingerprint(np.zeros(4))
    assert fingerprint("some.module:fn") is None  # needs running user code
