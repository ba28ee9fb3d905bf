#!/usr/bin/env bash
# Sets a Debian/Ubuntu machine up to build and run osimage: installs the system packages
# listed in .ci/apt-packages (tools the ISO, boot and restore steps call, and the test
# suite's independent checkers), then builds the release binary at target/release/osimage.
# Run as root (or with sudo). Needs a Rust toolchain (rustup) for the build.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo bash setup.sh): it installs Debian packages" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2046
apt-get install -y -q --no-install-recommends $(grep -v '^\s*#' .ci/apt-packages | tr '\n' ' ')
if ! command -v cargo >/dev/null; then
  echo "setup.sh: cargo not found: install Rust with rustup (https://rustup.rs), then re-run" >&2
  exit 1
fi
cargo build --release --locked
echo "setup.sh: done: target/release/osimage"
