#!/usr/bin/env bash
# Prepares a machine to build, run and test Evergreen. Safe to run again: it only installs
# what is missing.
#
#   1. Debian/Ubuntu packages: qemu-system-x86 (QEMU), ovmf (UEFI firmware for QEMU), gdb
#      (the debugger; the `gdb` system test drives it) and xorriso (makes the ISO images).
#   2. rustup, if missing.
#   3. The pinned Rust toolchain of rust-toolchain.toml with its targets and components
#      (needed explicitly where RUSTUP_AUTO_INSTALL=0).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "setup: $*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' (no sudo found); run it as root, then run this script again"
    fi
}

# --- 1. System packages -------------------------------------------------------------------

install_debian_packages() {
    local wanted=(qemu-system-x86 ovmf gdb xorriso musl-tools busybox-static strace) missing=() pkg
    for pkg in "${wanted[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        say "packages ${wanted[*]}: installed"
        return
    fi
    say "installing ${missing[*]}"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}")
    # Package lists are fetched only when there are none or the install fails without them.
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    fi
    if ! as_root "${apt[@]}"; then
        say "install failed; updating the package lists and trying again"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        as_root "${apt[@]}"
    fi
}

if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    install_debian_packages
elif command -v qemu-system-x86_64 >/dev/null 2>&1; then
    say "not a Debian/Ubuntu system; found qemu-system-x86_64 (make sure OVMF is installed:" \
        "edk2-ovmf on Fedora/Arch, or set OVMF_PATH; gdb, for the gdb test; and xorriso for" \
        "ISOs: xorriso on Fedora, libisoburn on Arch)"
else
    die "not a Debian/Ubuntu system: install QEMU for x86-64, OVMF, gdb and xorriso (e.g." \
        "Fedora: qemu-system-x86 edk2-ovmf gdb xorriso; Arch: qemu-system-x86 edk2-ovmf gdb" \
        "libisoburn), then run this again"
fi

# --- 2. rustup ----------------------------------------------------------------------------

if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

fresh_rustup=0
if ! command -v rustup >/dev/null 2>&1; then
    say "installing rustup (https://sh.rustup.rs)"
    installer=$(mktemp)
    trap 'rm -f "$installer"' EXIT
    if { command -v curl >/dev/null 2>&1 \
            && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs -o "$installer"; } \
        || { command -v wget >/dev/null 2>&1 \
            && wget -q --https-only -O "$installer" https://sh.rustup.rs; }; then
        sh "$installer" -y --profile minimal --default-toolchain none --no-modify-path
    elif command -v apt-get >/dev/null 2>&1 \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q rustup; then
        say "installed rustup from the distribution's packages"
    else
        die "could not download rustup from https://sh.rustup.rs (no network access to it?)." \
            "Install rustup another way (https://rustup.rs, or 'apt-get install rustup' on" \
            "Debian 13+/Ubuntu 24.04+), then run this script again."
    fi
    # shellcheck disable=SC1091
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    command -v rustup >/dev/null 2>&1 || die "rustup was installed but is not on PATH"
    fresh_rustup=1
fi

# --- 3. The pinned toolchain ---------------------------------------------------------------

# Values of rust-toolchain.toml, for rustup versions that cannot read it themselves.
toml_string() { sed -n "s/^$1 *= *\"\\(.*\\)\"/\\1/p" rust-toolchain.toml; }
toml_list() {
    sed -n "s/^$1 *= *\\[\\(.*\\)\\]/\\1/p" rust-toolchain.toml | tr -d ' "' | tr ',' ' '
}

channel=$(toml_string channel)
[ -n "$channel" ] || die "no channel in rust-toolchain.toml"
say "Rust toolchain $channel (from rust-toolchain.toml)"
if ! rustup toolchain install; then
    # rustup before 1.28 cannot read the file itself: spell the toolchain out.
    say "retrying with the toolchain spelled out (older rustup)"
    profile=$(toml_string profile)
    args=(toolchain install "$channel" --profile "${profile:-minimal}")
    for c in $(toml_list components); do args+=(--component "$c"); done
    for t in $(toml_list targets); do args+=(--target "$t"); done
    rustup "${args[@]}"
fi

installed_targets=$(rustup target list --installed --toolchain "$channel")
for t in $(toml_list targets); do
    grep -qx "$t" <<<"$installed_targets" || die "target $t of $channel is not installed"
done
say "ready: $(cargo --version)"
if [ "$fresh_rustup" -eq 1 ]; then
    say "rustup was just installed: in this shell, run '. \"\$HOME/.cargo/env\"' first" \
        "(new shells find cargo by themselves once ~/.cargo/bin is on PATH)"
fi
