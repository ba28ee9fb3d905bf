#!/usr/bin/env bash
# Sets a Debian/Ubuntu machine up to build and run osimage: installs the Debian packages
# running osimage needs (.ci/apt-runtime: GRUB, mtools, dosfstools, busybox-static...) and
# those building it needs (.ci/apt-build), then builds the release binary at
# target/release/osimage. With --with-tests, also the test suite's tools (.ci/apt-packages:
# qemu, ovmf, debootstrap, genisoimage, p7zip...), as .ci/run does, and at the end Garage, the
# S3 server of the `store` tests (.ci/garage-build: once per machine, 9 min on two cores,
# into /var/cache/osimage-ci; nothing to do when it is there). With OSIMAGE_GARAGE_LATER=1 in
# the environment, that build is left to the caller (.ci/run starts it in the background).
# Run as root (or with sudo). Needs a Rust toolchain (rustup) for the build.
set -euo pipefail
cd "$(dirname "$0")"
lists=(.ci/apt-runtime .ci/apt-build)
case "${1:-}" in
  "") ;;
  --with-tests) lists+=(.ci/apt-packages) ;;
  *)
    echo "usage: bash setup.sh [--with-tests]" >&2
    exit 2
    ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo bash setup.sh): it installs Debian packages" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2046
apt-get install -y -q --no-install-recommends $(cat "${lists[@]}" | grep -v '^\s*#' | tr '\n' ' ')
if ! command -v cargo >/dev/null; then
  echo "setup.sh: cargo not found: install Rust with rustup (https://rustup.rs), then re-run" >&2
  exit 1
fi
cargo build --release --locked
if [ "${1:-}" = --with-tests ]; then
  if [ "${OSIMAGE_GARAGE_LATER:-}" = 1 ]; then
    echo "setup.sh: OSIMAGE_GARAGE_LATER=1: building Garage (.ci/garage-build) is left to the caller"
  else
    bash .ci/garage-build
  fi
fi
echo "setup.sh: done: target/release/osimage"
