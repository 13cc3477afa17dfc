"""edgedeploy: PyTorch → pruned, full-integer int8 TFLite → TFLite Micro firmware → on-device numbers.

The package is a library first; ``toolchain.cli`` is a thin layer on top. Stages, in order:
prune → convert (export, onnx2tf, PTQ) → validate → emit → firmware → bench. Heavy
dependencies (torch, TensorFlow) are imported lazily, inside the stages that need them.
"""

__version__ = "0.1.0"
