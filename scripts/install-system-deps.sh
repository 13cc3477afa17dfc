#!/usr/bin/env bash
# Installs the Debian packages edgedeploy's tests and demo use, when they are missing:
# the Arm cross toolchain, QEMU for Cortex-M, OpenSSH server (SSH runner tests), the adb
# client/server (ADB runner tests), Chromium (report rendering test), clang (protocol fuzzing).
# Needs root (or sudo). Safe to run again: it does nothing when everything is present.
set -euo pipefail

declare -A NEED=(
  [arm-none-eabi-gcc]=gcc-arm-none-eabi
  [qemu-system-arm]=qemu-system-arm
  [sshd]=openssh-server
  [adb]=adb
  [chromium]=chromium
  [clang]=clang
  [xxd]=xxd
  [gcc]=gcc
)
missing=()
for cmd in "${!NEED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ]; then
    missing+=("${NEED[$cmd]}")
  fi
done
# newlib / libstdc++ for arm-none-eabi and clang's fuzzer runtime have no command to probe.
dpkg -s libnewlib-arm-none-eabi >/dev/null 2>&1 || missing+=(libnewlib-arm-none-eabi)
dpkg -s libstdc++-arm-none-eabi-newlib >/dev/null 2>&1 || missing+=(libstdc++-arm-none-eabi-newlib)
dpkg -s libclang-rt-14-dev >/dev/null 2>&1 || missing+=(libclang-rt-14-dev)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "error: need root to install: ${missing[*]} (run: apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
