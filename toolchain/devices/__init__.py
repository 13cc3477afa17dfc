"""Reaching phones and Linux boards: ADB (``adb``), SSH (``ssh``), and what they share
(``shell``: the remote-shell contract, quoting, scratch directories, ``elf``: binary checks)."""
