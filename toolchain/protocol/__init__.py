"""The edgedeploy device protocol (EDP v1, docs/protocol.md): framing (``frame``), message
payloads (``messages``), the host client (``client.DeviceClient``) and the device side in
Python (``device.DeviceDispatcher``, used by the host-TFLM device and test fakes)."""

from toolchain.protocol.client import DeviceClient
from toolchain.protocol.frame import VERSION, ErrCode, Frame, FrameParser, MsgType, encode
from toolchain.protocol.messages import FwKind, Hello, ProfileEntry, TensorInfo, TickUnit

__all__ = [
    "VERSION",
    "DeviceClient",
    "ErrCode",
    "Frame",
    "FrameParser",
    "FwKind",
    "Hello",
    "MsgType",
    "ProfileEntry",
    "TensorInfo",
    "TickUnit",
    "encode",
]
