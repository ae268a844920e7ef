#!/usr/bin/env bash
# Install the Debian packages the cross-target tests (and the report's headless-browser test) need, if they are
# missing and apt-get is usable.
set -euo pipefail
packages=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
          clang-14 lld-14 libclang-rt-14-dev-wasm32 wasi-libc
          chromium)  # the HTML report's browser test (headless)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: apt-get not found; cross-target tests will be skipped (missing: ${missing[*]})"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "system-deps: not root and no sudo; cross-target tests will be skipped (missing: ${missing[*]})"
    exit 0
  fi
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
