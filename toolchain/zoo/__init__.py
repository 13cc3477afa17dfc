"""A small model zoo to point ``edgedeploy convert`` at.

* :mod:`toolchain.zoo.mlperf_tiny` — PyTorch ports of the four MLPerf Tiny reference models
  (``resnet8``, ``ds_cnn``, ``mobilenet_v1_025``, ``fc_autoencoder``) that take the
  reference's trained weights (:mod:`toolchain.zoo.weights`), e.g.
  ``edgedeploy convert toolchain.zoo.mlperf_tiny:resnet8 ...``.
* :mod:`toolchain.zoo.digits` — a tiny CNN trained in seconds on scikit-learn's digits.
* :mod:`toolchain.zoo.mlperf_data` — inputs for the ports built from the reference folder.

Every factory returns an ``nn.Module`` in eval mode with an ``example_inputs`` tuple.
"""

from __future__ import annotations

from torch import nn

#: ``edgedeploy convert`` model specs of the zoo, by short name.
MODELS: dict[str, str] = {
    "resnet8": "toolchain.zoo.mlperf_tiny:resnet8",
    "ds_cnn": "toolchain.zoo.mlperf_tiny:ds_cnn",
    "mobilenet_v1_025": "toolchain.zoo.mlperf_tiny:mobilenet_v1_025",
    "fc_autoencoder": "toolchain.zoo.mlperf_tiny:fc_autoencoder",
    "digits": "toolchain.zoo.digits:model",
}


def folded_parameter_count(model: nn.Module) -> int:
    """Parameters once BatchNorm is folded: conv/linear weights plus one bias per output.

    This is what a TFLite model stores (BatchNorm disappears into the preceding layer's
    weights and bias), so it compares directly with published counts.
    """
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Linear):
            total += m.weight.numel() + int(m.weight.shape[0])
    return total
