# Sourced by scripts/demo, scripts/test and .ci/run: makes sure this machine has what
# etcd-blocking needs, and exports ETCD_BIN.
#
#   cargo          the Rust toolchain (https://rustup.rs); never installed here
#   cmake, g++     to build grpcio-sys (gRPC C-core)
#   etcd           the server the tests and the demo start on loopback
#
# On Debian or Ubuntu, missing cmake and g++ are installed with apt-get (as root, or with
# sudo). etcd is taken from ETCD_BIN, else from PATH, else unpacked from Debian's
# etcd-server package into ~/.cache/etcd-blocking/etcd without installing it, so no system
# service is started. Elsewhere the script stops and names what to install.

deps_fail() {
    echo "etcd-blocking: $*" >&2
    exit 1
}

deps_as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        deps_fail "need root or sudo to run: $*"
    fi
}

deps_apt_updated=""
deps_apt_update() {
    if [ -z "$deps_apt_updated" ]; then
        deps_as_root apt-get update -qq
        deps_apt_updated=1
    fi
}

deps_is_debian() {
    [ -r /etc/debian_version ] && command -v apt-get >/dev/null 2>&1
}

# Every script builds into one target directory outside the clone, kept between runs and
# clones on this machine: grpcio's C core takes minutes to build, so nothing should build it
# twice. Set CARGO_TARGET_DIR to choose another.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/etcd-blocking/target}"

ensure_deps() {
    command -v cargo >/dev/null 2>&1 ||
        deps_fail "cargo is missing: install Rust from https://rustup.rs, then run this again"

    local missing=()
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    command -v g++ >/dev/null 2>&1 || command -v c++ >/dev/null 2>&1 || missing+=(g++)
    command -v kill >/dev/null 2>&1 || missing+=(procps)
    if [ ${#missing[@]} -gt 0 ]; then
        deps_is_debian ||
            deps_fail "missing: ${missing[*]} (cmake and a C++ compiler build grpcio); install them and run this again"
        echo "etcd-blocking: installing ${missing[*]} with apt-get" >&2
        deps_apt_update
        deps_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi

    if [ -n "${ETCD_BIN:-}" ]; then
        [ -x "$ETCD_BIN" ] || deps_fail "ETCD_BIN=$ETCD_BIN is not an executable file"
    elif command -v etcd >/dev/null 2>&1; then
        ETCD_BIN=$(command -v etcd)
    else
        local cache="${XDG_CACHE_HOME:-$HOME/.cache}/etcd-blocking/etcd"
        if [ ! -x "$cache/usr/bin/etcd" ]; then
            deps_is_debian ||
                deps_fail "etcd is missing: install etcd 3.4 or later (https://etcd.io), or set ETCD_BIN"
            echo "etcd-blocking: unpacking Debian's etcd-server into $cache" >&2
            deps_apt_update
            local tmp
            tmp=$(mktemp -d)
            (cd "$tmp" && apt-get download -qq etcd-server >&2) ||
                deps_fail "could not download Debian's etcd-server package"
            mkdir -p "$cache"
            dpkg-deb -x "$tmp"/etcd-server_*.deb "$cache" ||
                deps_fail "could not unpack Debian's etcd-server package"
            rm -rf "$tmp"
            [ -x "$cache/usr/bin/etcd" ] || deps_fail "Debian's etcd-server package has no usr/bin/etcd"
        fi
        ETCD_BIN="$cache/usr/bin/etcd"
    fi
    export ETCD_BIN
    echo "etcd-blocking: using $("$ETCD_BIN" --version | head -n 1) from $ETCD_BIN" >&2
}
