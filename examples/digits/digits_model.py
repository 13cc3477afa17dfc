"""The demo's model and data: a small CNN trained on scikit-learn's bundled digits.

This is what a user's own module looks like: a factory that returns an ``nn.Module`` (with an
``example_inputs`` attribute, so the project file needs no ``input_shape``) and functions that
return arrays in PyTorch layout (N×1×8×8 float32, pixel values 0..1) and integer labels.
``edgedeploy.toml`` names them as ``digits_model.py:model`` and so on.

The network and its training live in :mod:`toolchain.zoo.digits` (about 3 s on one core, the
same weights every time); the split is the one it was trained on, so the validation data is
data the model never saw.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from toolchain.zoo import digits


def model() -> nn.Module:
    """The trained CNN: conv16-bn-relu, conv32-bn-relu, maxpool, 512→64→10 (38k parameters)."""
    return digits.model()


def train() -> np.ndarray:
    """Training split (1,437 images): fine-tuning after pruning, and calibration."""
    return digits.load_data()[0]


def train_labels() -> np.ndarray:
    return digits.load_data()[1]


def validation() -> np.ndarray:
    """Validation split (360 images): fidelity, accuracy, golden vectors."""
    return digits.load_data()[2]


def validation_labels() -> np.ndarray:
    return digits.load_data()[3]
