"""Host tier: the checks in front of the SSH and ADB runners (issue 14) without a device:
known_hosts parsing and the host-key decision (@revoked, @cert-authority, hashed names,
wildcards, unparsable lines), ~/.ssh/config precedence, the architecture mapping, the
``killed by signal`` wording and the benchmark_model run count."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import paramiko
import pytest

from toolchain.bench.result import BenchResult
from toolchain.devices import arch
from toolchain.devices.known_hosts import KnownHosts, host_entry_name, parse_line
from toolchain.devices.shell import exit_description
from toolchain.devices.ssh import _HostKeyPolicy, resolve_destination
from toolchain.errors import ArchMismatchError, HostKeyError, InputFileError, UsageError
from toolchain.targets import load_target


def _key(seed: int) -> paramiko.Ed25519Key:
    name = b"ssh-ed25519"
    blob = struct.pack(">I", len(name)) + name + struct.pack(">I", 32) + bytes([seed] * 32)
    return paramiko.Ed25519Key(data=blob)


def _line(key: paramiko.PKey, hosts: str, marker: str = "") -> str:
    return f"{marker + ' ' if marker else ''}{hosts} {key.get_name()} {key.get_base64()}\n"


def _decide(kh_path: Path, key: paramiko.PKey, name: str, trust: bool = False) -> None:
    policy = _HostKeyPolicy(KnownHosts.load(kh_path), trust, name)
    policy.missing_host_key(paramiko.SSHClient(), name, key)


# --- known_hosts ---------------------------------------------------------------------------


def test_plain_hashed_and_wildcard_entries_accept_the_right_key(tmp_path: Path) -> None:
    good, other = _key(1), _key(2)
    hashed = paramiko.HostKeys.hash_host("[10.0.0.7]:2222")  # paramiko's own implementation
    kh = tmp_path / "known_hosts"
    kh.write_text(
        "# comment\n\n"
        + _line(good, "pi.local,192.168.1.5")
        + _line(good, hashed)
        + _line(good, "*.lab,!bad.lab")
        + _line(other, "[other]:2200")
    )
    for name in ("pi.local", "192.168.1.5", "[10.0.0.7]:2222", "Board.LAB"):
        _decide(kh, good, name)  # accepted: returns
    with pytest.raises(HostKeyError, match="not in"):  # negated pattern
        _decide(kh, good, "bad.lab")
    with pytest.raises(HostKeyError, match="not in"):  # the hash is of another port
        _decide(kh, good, "[10.0.0.7]:22")
    with pytest.raises(HostKeyError, match="CHANGED") as e:
        _decide(kh, other, "pi.local")
    assert f"{kh}:3" in str(e.value) and "ssh-keygen -R" in str(e.value)


def test_revoked_key_is_refused_for_every_host_even_when_trusted(tmp_path: Path) -> None:
    key = _key(3)
    kh = tmp_path / "known_hosts"
    kh.write_text(_line(key, "pi.local") + _line(key, "*", "@revoked"))
    with pytest.raises(HostKeyError, match=r"REVOKED in .*known_hosts:2") as e:
        _decide(kh, key, "pi.local", trust=True)
    assert e.value.hint and "new host key" in e.value.hint
    with pytest.raises(HostKeyError, match="REVOKED"):
        _decide(kh, key, "[elsewhere]:2222", trust=True)
    assert kh.read_text().count("\n") == 2  # nothing appended


def test_cert_authority_only_is_reported_not_a_crash(tmp_path: Path) -> None:
    ca, host = _key(4), _key(5)
    kh = tmp_path / "known_hosts"
    kh.write_text(_line(ca, "*.corp", "@cert-authority"))
    with pytest.raises(HostKeyError, match=r"certificate authority .*known_hosts:1") as e:
        _decide(kh, host, "pi.corp")
    assert e.value.hint and "ssh-keyscan" in e.value.hint and "--trust-new-host" in e.value.hint
    with pytest.raises(HostKeyError, match="not in"):  # the CA line is for *.corp only
        _decide(kh, host, "pi.local")


def test_unparsable_lines_are_skipped_with_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = _key(6)
    kh = tmp_path / "known_hosts"
    kh.write_bytes(
        b"garbage\n"
        + b"@weird host ssh-ed25519 AAAA\n"
        + b"host ssh-ed25519 !!!notbase64\n"
        + b"host ssh-rsa "
        + key.get_base64().encode()
        + b"\n"  # type says rsa, blob is ed25519
        + b"\xff\xfe host\n"
        + _line(key, "pi.local").encode()
    )
    with caplog.at_level(logging.WARNING, logger="toolchain.devices.known_hosts"):
        loaded = KnownHosts.load(kh)
    assert [s.split(": ", 1)[0] for s in loaded.skipped] == [f"{kh}:{n}" for n in range(1, 6)]
    assert "unknown marker '@weird'" in loaded.skipped[1]
    assert "not valid base64" in loaded.skipped[2]
    assert "says ssh-rsa but the key is ssh-ed25519" in loaded.skipped[3]
    assert "not UTF-8" in loaded.skipped[4]
    assert sum(f"{kh}:" in r.getMessage() for r in caplog.records) == 5
    _decide(kh, key, "pi.local")  # the good line still works


def test_trust_new_host_appends_the_ssh_style_entry(tmp_path: Path) -> None:
    key = _key(7)
    kh = tmp_path / "sub" / "known_hosts"
    _decide(kh, key, host_entry_name("127.0.0.1", 2222), trust=True)
    assert kh.read_text() == _line(key, "[127.0.0.1]:2222")
    _decide(kh, key, "[127.0.0.1]:2222")
    assert parse_line(kh.read_text()) is not None


# --- ~/.ssh/config -------------------------------------------------------------------------


def test_ssh_config_precedence(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = tmp_path / "id_pi"
    key.write_text("x")
    cfg = tmp_path / "config"
    cfg.write_text(
        f"Host pi\n  HostName 192.168.1.50\n  Port 2200\n  User alice\n  IdentityFile {key}\n"
        f"  IdentityFile {tmp_path / 'missing'}\n"
        "Host jump\n  ProxyJump gw\n"
        "Host *\n  User bob\n"
    )
    d = resolve_destination("pi", config_file=cfg)
    assert (d.host, d.port, d.user, d.identity_files) == ("192.168.1.50", 2200, "alice", (key,))
    assert d.sources["port"].startswith("ssh config")
    assert "missing for pi does not exist" in caplog.text
    d = resolve_destination("carol@pi:2022", config_file=cfg)  # explicit wins
    assert (d.host, d.port, d.user) == ("192.168.1.50", 2022, "carol")
    d = resolve_destination("pi", port=2023, config_file=cfg)
    assert d.port == 2023 and d.sources["port"] == "command line"
    d = resolve_destination("10.1.1.1", config_file=cfg)  # only Host *
    assert (d.host, d.port, d.user) == ("10.1.1.1", 22, "bob")
    resolve_destination("jump", config_file=cfg)
    assert "proxyjump for jump is not supported" in caplog.text
    d = resolve_destination("pi", config_file=tmp_path / "none")  # no config: defaults
    assert (d.host, d.port, d.user) == ("pi", 22, None)


def test_port_twice_and_broken_config_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="two SSH ports") as e:
        resolve_destination("pi@board:2222", port=22, config_file=tmp_path / "none")
    assert e.value.hint and "--ssh-port" in e.value.hint
    cfg = tmp_path / "config"
    cfg.write_text("Host pi\n  Port twenty\n")
    with pytest.raises(InputFileError, match="Port 'twenty'"):
        resolve_destination("pi", config_file=cfg)
    cfg.write_bytes(b"Host pi\n  HostName \xff\xfe\n")
    with pytest.raises(InputFileError, match="cannot use the ssh config"):
        resolve_destination("pi", config_file=cfg)


# --- architecture --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "canonical"),
    [("aarch64", "aarch64"), ("arm64-v8a", "aarch64"), ("ARM64", "aarch64"),
     ("armv7l", "armv7"), ("armeabi-v7a", "armv7"), ("armv8l", "armv7"),
     ("x86_64", "x86_64"), ("amd64", "x86_64"), ("i686", "x86"), ("riscv64", "riscv64"),
     (" mips \n", "mips")],
)  # fmt: skip
def test_canonical_arch(reported: str, canonical: str) -> None:
    assert arch.canonical_arch(reported) == canonical


def test_arch_check_refuses_a_mismatch_and_names_matching_targets() -> None:
    rpi4, phone = load_target("rpi4"), load_target("android-arm64")
    assert arch.target_arch(rpi4) == "aarch64" and arch.target_arch(phone) == "aarch64"
    assert arch.target_arch(load_target("mps2-an386")) is None
    assert arch.check_device_arch(rpi4, "aarch64\n", device="ssh pi@x:22") == "aarch64"
    assert arch.check_device_arch(phone, ["arm64-v8a", "armeabi-v7a"], device="d") == "aarch64"
    with pytest.raises(ArchMismatchError) as e:
        arch.check_device_arch(rpi4, "x86_64", device="ssh me@127.0.0.1:22")
    msg = str(e.value)
    assert "target rpi4 is aarch64 but ssh me@127.0.0.1:22 reports x86_64" in msg
    assert "--target linux-x86_64" in msg and "--allow-arch-mismatch" in msg
    with pytest.raises(ArchMismatchError, match="reports x86_64"):
        arch.check_device_arch(phone, ["x86_64"], device="emulator")
    assert arch.check_device_arch(rpi4, "x86_64", device="d", allow_mismatch=True) == "x86_64"
    assert "linux-x86_64" in arch.targets_for_arch("amd64")
    assert "android-x86_64" in arch.targets_for_arch("x86_64")


# --- wording and counts --------------------------------------------------------------------


def test_exit_description_is_shared_wording() -> None:
    assert exit_description(139) == "killed by signal 11 (SIGSEGV)"
    assert exit_description(137) == "killed by signal 9 (SIGKILL)"
    assert exit_description(1) == "exit code 1"


def test_benchmark_model_rounds_count_as_rounds_times_runs(tmp_path: Path) -> None:
    kw = {"runner": "adb", "target": "t", "model": "m", "model_sha256": "0", "unit": "ms"}
    rounds = BenchResult(**kw, samples=[1.0, 1.1, 1.05], warmup=0, runs_per_sample=50)
    rounds.add_trust_warnings()
    d = rounds.to_dict()
    assert d["runs"] == 150 and d["runs_per_sample"] == 50 and len(d["samples"]) == 3
    assert not any("only 3 runs" in w for w in rounds.warnings)
    assert any("only 3 samples (rounds of 50 runs each)" in w for w in rounds.warnings)
    timed = BenchResult(**kw, samples=[1.0, 1.1, 1.05], warmup=0)
    timed.add_trust_warnings()
    assert timed.to_dict()["runs"] == 3 and any("only 3 runs" in w for w in timed.warnings)


def test_no_cli_flag_left_out() -> None:
    import argparse

    from toolchain.cli import phone_options

    p = argparse.ArgumentParser()
    phone_options.add_phone_arguments(p)
    args = p.parse_args(["--known-hosts", "kh", "--allow-arch-mismatch", "--ssh-port", "2"])
    opts = phone_options.phone_options(args)
    assert opts == {"known_hosts": Path("kh"), "allow_arch_mismatch": True, "ssh_port": 2}
