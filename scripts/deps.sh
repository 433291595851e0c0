# Sourced by scripts/demo, scripts/test and .ci/run: makes sure this machine has what
# etcd-blocking needs, and exports ETCD_BIN.
#
#   cargo          the Rust toolchain (https://rustup.rs); never installed here
#   cmake, g++     to build grpcio-sys (gRPC C-core)
#   libssl-dev     OpenSSL's headers and libraries, for the `tls` feature (on by default)
#   etcd           the server the tests, the demo and the benches start on loopback,
#                  of the version ETCD_VERSION chooses (see ensure_etcd below)
#   go             to build etcd 3.5 and later; never installed here
#
# On Debian or Ubuntu, missing cmake, g++ and libssl-dev are installed with apt-get (as root, or with
# sudo). Elsewhere the script stops and names what to install.

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
    ensure_tools
    ensure_etcd
}

# cargo, cmake, a C++ compiler, kill, and python3 (for CI's README table check).
ensure_tools() {
    command -v cargo >/dev/null 2>&1 ||
        deps_fail "cargo is missing: install Rust from https://rustup.rs, then run this again"

    local missing=()
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    command -v g++ >/dev/null 2>&1 || command -v c++ >/dev/null 2>&1 || missing+=(g++)
    command -v kill >/dev/null 2>&1 || missing+=(procps)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    # gRPC's cmake finds OpenSSL by its headers (and links its libraries).
    [ -r /usr/include/openssl/ssl.h ] || [ -r /usr/local/include/openssl/ssl.h ] ||
        missing+=(libssl-dev)
    if [ ${#missing[@]} -gt 0 ]; then
        deps_is_debian ||
            deps_fail "missing: ${missing[*]} (cmake, a C++ compiler and OpenSSL's headers build grpcio); install them and run this again"
        echo "etcd-blocking: installing ${missing[*]} with apt-get" >&2
        deps_apt_update
        deps_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
}

# The newest patch of each etcd line on the Go module proxy when this was written; bump
# them here (`go list -m -versions go.etcd.io/etcd/server/v3`).
ETCD_NEWEST_3_5=3.5.35
ETCD_NEWEST_3_6=3.6.16
ETCD_NEWEST_3_7=3.7.3

# "etcd 3.7.3", of the ETCD_BIN chosen.
etcd_name() {
    "$ETCD_BIN" --version | sed -n 's/^etcd Version: /etcd /p'
}

# The version ETCD_VERSION names (3.4, 3.5, 3.6, 3.7, an exact 3.5.x to 3.7.x, or "newest").
etcd_version_of() {
    case "$1" in
        3.4 | 3.4.23) echo 3.4.23 ;;
        3.5) echo "$ETCD_NEWEST_3_5" ;;
        3.6) echo "$ETCD_NEWEST_3_6" ;;
        3.7 | newest) echo "$ETCD_NEWEST_3_7" ;;
        3.[567].[0-9]*) echo "$1" ;;
        *) deps_fail "ETCD_VERSION=$1: choose 3.4, 3.5, 3.6, 3.7 or an exact 3.5.x to 3.7.x" ;;
    esac
}

# Sets ETCD_BIN to the server the tests, the demo and the benches start:
#   ETCD_BIN set       that binary, whatever it is;
#   ETCD_VERSION=3.4   3.4.23, unpacked from Debian's etcd-server package (no service is
#                      started) into ~/.cache/etcd-blocking/etcd;
#   ETCD_VERSION=3.5, 3.6, 3.7 or an exact version
#                      built once with Go from scripts/etcd-server/main.go against
#                      go.etcd.io/etcd/server/v3, cached in
#                      ~/.cache/etcd-blocking/etcd-server/<version>/etcd;
#   ETCD_VERSION unset the newest (3.7); without Go, 3.4.23, saying so.
ensure_etcd() {
    if [ -n "${ETCD_BIN:-}" ]; then
        [ -x "$ETCD_BIN" ] || deps_fail "ETCD_BIN=$ETCD_BIN is not an executable file"
    else
        local version
        if [ -n "${ETCD_VERSION:-}" ]; then
            version=$(etcd_version_of "$ETCD_VERSION") || exit 1
        elif command -v go >/dev/null 2>&1; then
            version=$ETCD_NEWEST_3_7
        else
            echo "etcd-blocking: Go is missing, so etcd $ETCD_NEWEST_3_7 cannot be built; using 3.4.23 from Debian's package instead (install Go for the newest)" >&2
            version=3.4.23
        fi
        case "$version" in
            3.4.23) ensure_debian_etcd ;;
            *) ensure_built_etcd "$version" ;;
        esac
    fi
    export ETCD_BIN
    echo "etcd-blocking: using $(etcd_name) from $ETCD_BIN" >&2
}

ensure_debian_etcd() {
    local cache="${XDG_CACHE_HOME:-$HOME/.cache}/etcd-blocking/etcd"
    if [ ! -x "$cache/usr/bin/etcd" ]; then
        deps_is_debian ||
            deps_fail "etcd 3.4.23 comes from Debian's etcd-server package, and this is not Debian: set ETCD_BIN, or choose ETCD_VERSION=3.5 or later (built with Go)"
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
    # etcdctl 3.4 beside it, for snapshot restores (Debian's etcd-client package).
    if [ ! -x "$cache/usr/bin/etcdctl" ]; then
        deps_is_debian || deps_fail "etcdctl 3.4 comes from Debian's etcd-client package, and this is not Debian"
        echo "etcd-blocking: unpacking Debian's etcd-client into $cache" >&2
        deps_apt_update
        local client_tmp
        client_tmp=$(mktemp -d)
        (cd "$client_tmp" && apt-get download -qq etcd-client >&2) ||
            deps_fail "could not download Debian's etcd-client package"
        dpkg-deb -x "$client_tmp"/etcd-client_*.deb "$cache" ||
            deps_fail "could not unpack Debian's etcd-client package"
        rm -rf "$client_tmp"
        [ -x "$cache/usr/bin/etcdctl" ] || deps_fail "Debian's etcd-client package has no usr/bin/etcdctl"
    fi
    ETCD_BIN="$cache/usr/bin/etcd"
}

ensure_built_etcd() {
    local version=$1
    local dest="${XDG_CACHE_HOME:-$HOME/.cache}/etcd-blocking/etcd-server/$version"
    if [ ! -x "$dest/etcd" ]; then
        command -v go >/dev/null 2>&1 ||
            deps_fail "etcd $version is built with Go, which is missing: install Go 1.26 or later (https://go.dev/dl), set ETCD_BIN, or choose ETCD_VERSION=3.4"
        echo "etcd-blocking: building etcd $version with $(go env GOVERSION) into $dest (once; 1 to 3 minutes)" >&2
        local work
        work=$(mktemp -d)
        cp "$(dirname "${BASH_SOURCE[0]}")/etcd-server/main.go" "$work/"
        printf 'module etcd-blocking/etcd-server\n\ngo 1.24\n' >"$work/go.mod"
        if ! (cd "$work" &&
            go get "go.etcd.io/etcd/server/v3@v$version" &&
            go mod tidy &&
            CGO_ENABLED=0 go build -trimpath -o etcd .) >&2; then
            rm -rf "$work"
            deps_fail "building etcd $version failed (see above)"
        fi
        mkdir -p "$dest"
        # What it was built from, beside it; the rename makes the binary appear whole.
        cp "$work/go.mod" "$work/go.sum" "$dest/"
        mv "$work/etcd" "$dest/etcd.partial" && mv "$dest/etcd.partial" "$dest/etcd"
        rm -rf "$work"
    fi
    ensure_built_tools "$version" "$dest"
    ETCD_BIN="$dest/etcd"
}

# The Go tools beside a built etcd, of the same version: etcd-restore (etcdutl's
# snapshot restore, for clusters the launcher starts from a snapshot) and etcdctl (for
# tests that compare this client's answers with etcdctl's).
ensure_built_tools() {
    ensure_built_tool etcd-restore go.etcd.io/etcd/etcdutl/v3 "$1" "$2"
    ensure_built_tool etcdctl go.etcd.io/etcd/etcdctl/v3 "$1" "$2"
}

# ensure_built_tool NAME MODULE VERSION DEST: builds scripts/NAME/main.go against MODULE at
# VERSION into DEST/NAME, once.
ensure_built_tool() {
    local name=$1 module=$2 version=$3 dest=$4
    [ -x "$dest/$name" ] && return 0
    echo "etcd-blocking: building $name $version with $(go env GOVERSION) into $dest (once)" >&2
    local work
    work=$(mktemp -d)
    cp "$(dirname "${BASH_SOURCE[0]}")/$name/main.go" "$work/"
    printf 'module etcd-blocking/%s\n\ngo 1.24\n' "$name" >"$work/go.mod"
    if ! (cd "$work" &&
        go get "$module@v$version" &&
        # -e: etcd 3.5's modules' tests import one package from two modules, which tidy
        # reports though the build never sees it.
        go mod tidy -e &&
        CGO_ENABLED=0 go build -trimpath -o "$name" .) >&2; then
        rm -rf "$work"
        deps_fail "building $name $version failed (see above)"
    fi
    mv "$work/$name" "$dest/$name.partial" && mv "$dest/$name.partial" "$dest/$name"
    rm -rf "$work"
}
