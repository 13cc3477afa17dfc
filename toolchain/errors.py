"""The one error hierarchy of edgedeploy.

Every error a user can cause or meet derives from :class:`EdgeDeployError` and carries a
message that says what was wrong and, in ``hint``, what to do about it. Library code raises
these; only the CLI's ``main`` turns them into exit codes (``exit_code``) and coloured text.

Rules: no ``assert`` for runtime checks, no silent ``except Exception: pass``; when wrapping
a third-party exception, raise ours ``from`` it so the cause stays visible with ``--debug``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


class EdgeDeployError(Exception):
    """Base of every edgedeploy error.

    ``message`` says what was wrong; ``hint`` (optional) says what the user can do.
    ``exit_code`` is what the CLI exits with (1 unless a subclass says otherwise).
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


# --- user input ---------------------------------------------------------------------------


class UsageError(EdgeDeployError):
    """An option or argument is malformed or out of range (exit code 2)."""

    exit_code = 2


class InputFileError(EdgeDeployError):
    """A file the user named is missing, unreadable or not of the expected kind."""


class ModelLoadError(EdgeDeployError):
    """The PyTorch model could not be loaded or built (bad spec, factory raised, bad weights)."""


class UnsafeFileError(ModelLoadError):
    """A model or data file carries content that could run code when loaded (a pickle naming
    arbitrary callables, compiled code, graph calls outside the operator set); it is refused
    before any of it is unpickled (see :mod:`toolchain.safeload`)."""


class DataError(EdgeDeployError):
    """Calibration, validation or training data is unusable (shape, dtype, empty, NaN/inf)."""


class ProjectFileError(EdgeDeployError):
    """The project file (edgedeploy.toml) has unknown keys or wrong types."""


class TargetError(EdgeDeployError):
    """A target profile is unknown or invalid."""


# --- pipeline stages ----------------------------------------------------------------------


class ConversionError(EdgeDeployError):
    """PyTorch → ONNX → SavedModel → int8 TFLite failed."""


class ExportError(ConversionError):
    """torch → ONNX export failed."""


class Onnx2TfError(ConversionError):
    """onnx2tf failed or timed out; the message carries the tail of its output."""


class QuantizationError(ConversionError):
    """Full-integer post-training quantization failed (e.g. an op with no int8 kernel)."""


class GraphLintError(ConversionError):
    """The produced graph is not a clean int8 graph (float compute, CUSTOM/Flex ops)."""


class FidelityError(EdgeDeployError):
    """The int8 model misses a fidelity threshold (``--min-sqnr``, ``--max-accuracy-drop``).

    Exit code 3, so scripts can tell "worked, but not good enough" from "broke".
    """

    exit_code = 3
    #: what the missed attempt measured (bytes, SQNR, accuracy, arena), for the fallback
    #: that follows to report its cost against; None when not known
    measured: dict[str, Any] | None = None


class PruneError(EdgeDeployError):
    """Pruning failed: bad ratio or layer name, an untraceable model."""


class BudgetError(EdgeDeployError):
    """A model does not fit the target's flash/RAM budget (exit code 4)."""

    exit_code = 4


class TFLiteModelError(EdgeDeployError):
    """A .tflite file is not a valid TFLite flatbuffer, or an interpreter rejects it."""


class EmitError(EdgeDeployError):
    """Emitting C sources failed (bad symbol name, arena search failed...)."""


class CompileError(EdgeDeployError):
    """Compiling a .tflite model to plain C failed (unsupported operator, float model...)."""


class FirmwareError(EdgeDeployError):
    """Rendering or building a firmware project failed."""


class ToolchainMissingError(FirmwareError):
    """A required external program (arm-none-eabi-gcc, qemu-system-arm, adb, ...) is missing."""


class LibraryMismatchError(FirmwareError):
    """A TFLM static library was built for another CPU / float ABI than the target."""


# --- devices, transports, protocols -------------------------------------------------------


class DeviceError(EdgeDeployError):
    """Talking to a device (board, emulator, phone, Linux board) failed."""


class TransportError(DeviceError):
    """Moving bytes to or from a device failed."""


class PortNotFoundError(TransportError):
    """No such port / no device with the expected USB ids, or the port is busy."""


class IoTimeoutError(TransportError):
    """A read or write did not complete within its timeout."""


class TransportClosedError(TransportError):
    """The other end closed the link (process exited, socket closed, cable pulled)."""


class ProtocolError(DeviceError):
    """The device spoke, but not our protocol, or not our version of it."""


class ProtocolVersionError(ProtocolError):
    """The firmware speaks another protocol version."""


class RemoteError(ProtocolError):
    """The device answered with an error reply (its code and text are in the message)."""

    code: int = 0  # the protocol's error code, when it has one (EDP: docs/protocol.md)


class DeviceResetError(ProtocolError):
    """The device reset (sent BOOT) in the middle of a session; its state is gone."""


class ModelMismatchError(DeviceError):
    """The device runs a firmware built for another model (hash differs)."""


class DeviceNotFoundError(DeviceError):
    """No device attached, or the named one is absent, unauthorized or offline."""


class AmbiguousDeviceError(DeviceError):
    """Several devices are attached and none was chosen."""


class RemoteCommandError(DeviceError):
    """A command on the device (adb shell, ssh exec) failed or was killed."""


class AuthError(DeviceError):
    """Authentication to the device was refused (SSH key, unauthorized ADB)."""


class HostKeyError(DeviceError):
    """The SSH host key is unknown, changed or revoked."""


class ArchMismatchError(DeviceError):
    """The device's CPU architecture is not the target profile's (see toolchain.devices.arch)."""


class BenchmarkError(EdgeDeployError):
    """A benchmark ran but its result cannot be trusted or parsed."""


# --- the pipeline (edgedeploy run) --------------------------------------------------------


class StageError(EdgeDeployError):
    """A stage of ``edgedeploy run`` failed. ``stage`` names it, ``cause`` is the stage's own
    error (whose exit code this one takes); earlier stages' artifacts and the report are kept
    (``report``: the report.json that says so)."""

    def __init__(self, stage: str, cause: EdgeDeployError, *, report: Path | None = None) -> None:
        super().__init__(f"stage {stage!r} failed: {cause.message}", hint=cause.hint)
        self.stage = stage
        self.cause = cause
        self.report = report
        self.exit_code = cause.exit_code
