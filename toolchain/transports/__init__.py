"""Transports: bytes to and from a device (serial ports, sockets, ptys, fault injection).

The contract is in :class:`toolchain.transports.base.Transport`; protocols live in
``toolchain.protocol``.
"""

from toolchain.transports.base import Transport

__all__ = ["Transport"]
