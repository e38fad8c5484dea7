#!/usr/bin/env bash
# Installs everything the tests and the demo need, and does nothing that is already done:
#   - checks Node (>= 20.19) and Go (>= 1.24);
#   - builds the DTM server v1.19.0 from test/support/dtm-server (cached, see dtm_binary_path), and
#     test/support/go-peer (a Go service on DTM's Go SDK, for the wire-compatibility tests);
#   - installs PostgreSQL, MariaDB and Redis server binaries with apt-get when they are missing
#     (only as root; the machine's own services are never started or used);
#   - runs `npm ci` when package-lock.json changed since the last install.
# Anything it cannot do, it names, with how to get it, and exits non-zero.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DTM_VERSION="v1.19.0"
CACHE_HOME="${XDG_CACHE_HOME:-$HOME/.cache}"
DTM_BINARY="${DTM_BINARY:-$CACHE_HOME/nestjs-dtm/dtm-$DTM_VERSION/dtm}"
GO_PEER_BINARY="$CACHE_HOME/nestjs-dtm/go-peer/go-peer"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

version_ge() { # version_ge 1.24.3 1.24  -> true when $1 >= $2
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

check_node() {
  command -v node >/dev/null || die "Node.js is missing: install Node.js 20.19 or newer (Debian: apt-get install nodejs, or the official Node.js binaries)."
  local v; v="$(node -p 'process.versions.node')"
  version_ge "$v" "20.19.0" || die "Node.js $v is too old: nestjs-dtm needs Node.js 20.19 or newer (require(esm) and Nest 12)."
  command -v npm >/dev/null || die "npm is missing: it ships with Node.js; reinstall Node.js 20.19 or newer."
}

# The one list of where server binaries may live; test/support/services/binaries.ts searches the same.
extra_bin_dirs() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -d "$d" ] && printf '%s\n' "$d"; done | sort -V -r
  printf '%s\n' /usr/sbin /usr/local/sbin /usr/local/bin /usr/bin
}

find_bin() { # find_bin name...  -> first match on PATH or in the extra dirs
  local name dir
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
    while read -r dir; do
      [ -x "$dir/$name" ] && { printf '%s\n' "$dir/$name"; return 0; }
    done < <(extra_bin_dirs)
  done
  return 1
}

apt_install() { # apt_install package...
  if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
    die "missing: $* (the test harness starts private instances of them). Install them with: sudo apt-get install -y $*  (or your platform's packages), then run this command again."
  fi
  say "installing with apt-get: $*"
  # Keep apt from starting the packages' system services: the harness runs its own instances.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/tmp/nestjs-dtm-apt.log 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    say "apt-get install failed (package lists may be stale); running apt-get update and trying again"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >>/tmp/nestjs-dtm-apt.log 2>&1 || true
    rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >>/tmp/nestjs-dtm-apt.log 2>&1 || rc=$?
  fi
  [ "$created_policy" = 1 ] && rm -f "$policy"
  [ "$rc" = 0 ] || { tail -n 20 /tmp/nestjs-dtm-apt.log >&2; die "apt-get install $* failed (log: /tmp/nestjs-dtm-apt.log)."; }
}

ensure_databases() {
  local missing=()
  { find_bin initdb >/dev/null && find_bin postgres >/dev/null; } || missing+=(postgresql)
  { find_bin mariadbd mysqld >/dev/null && find_bin mariadb-install-db mysql_install_db >/dev/null; } || missing+=(mariadb-server)
  find_bin redis-server >/dev/null || missing+=(redis-server)
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
  say "postgres: $(find_bin postgres)  mariadb: $(find_bin mariadbd mysqld)  redis: $(find_bin redis-server)"
}

ensure_dtm() {
  local mod="$ROOT/test/support/dtm-server"
  local ldflags="-s -w -X main.Version=$DTM_VERSION"
  local stamp_want stamp_file="$DTM_BINARY.stamp"
  stamp_want="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16) $ldflags"
  if [ -x "$DTM_BINARY" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp_want" ]; then
    say "dtm server: $DTM_BINARY (cached)"
    # the tests also read DTM's Go module (its SQL schema, its protos): a no-op when the module cache has it
    if command -v go >/dev/null; then (cd "$mod" && go mod download github.com/dtm-labs/dtm) || die "downloading DTM's Go module failed (above)."; fi
    return
  fi
  command -v go >/dev/null || die "Go is missing: the DTM server $DTM_VERSION is built from source with Go 1.24 or newer. Install Go (Debian's golang package is too old; use the official Go binaries) and run this command again, or set DTM_BINARY to a dtm $DTM_VERSION binary."
  local gov; gov="$(go env GOVERSION | sed 's/^go//')"
  version_ge "$gov" "1.24" || die "Go $gov is too old: building the DTM server needs Go 1.24 or newer (or set DTM_BINARY to a dtm $DTM_VERSION binary)."
  say "building the DTM server $DTM_VERSION with go $gov (first time only; downloads modules from the Go module proxy)"
  mkdir -p "$(dirname "$DTM_BINARY")"
  local log; log="$(mktemp)"
  (cd "$mod" && go mod download >"$log" 2>&1) || { cat "$log" >&2; die "downloading the DTM server's modules failed (above)."; }
  (cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "$ldflags" -o "$DTM_BINARY.tmp.$$" github.com/dtm-labs/dtm) \
    || die "building the DTM server failed (see the go output above)."
  rm -f "$log"
  mv -f "$DTM_BINARY.tmp.$$" "$DTM_BINARY"
  printf '%s' "$stamp_want" > "$stamp_file"
  say "dtm server: $DTM_BINARY ($("$DTM_BINARY" -v 2>/dev/null))"
}

ensure_go_peer() {
  local mod="$ROOT/test/support/go-peer"
  local stamp_want stamp_file="$GO_PEER_BINARY.stamp"
  stamp_want="$(cat "$mod/go.mod" "$mod/go.sum" "$mod"/*.go "$mod"/*.proto | sha256sum | cut -c1-16)"
  if [ -x "$GO_PEER_BINARY" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp_want" ]; then
    say "go peer: $GO_PEER_BINARY (cached)"
    return
  fi
  command -v go >/dev/null || die "Go is missing: the wire-compatibility tests run a Go service written with DTM's Go SDK (test/support/go-peer), built with Go 1.24 or newer. Install Go (the official Go binaries) and run this command again."
  say "building the Go peer (DTM's Go SDK $DTM_VERSION) from test/support/go-peer"
  mkdir -p "$(dirname "$GO_PEER_BINARY")"
  (cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -o "$GO_PEER_BINARY.tmp.$$" .) \
    || die "building test/support/go-peer failed (see the go output above)."
  mv -f "$GO_PEER_BINARY.tmp.$$" "$GO_PEER_BINARY"
  printf '%s' "$stamp_want" > "$stamp_file"
}

ensure_node_modules() {
  local want have marker="$ROOT/node_modules/.nestjs-dtm-lock"
  want="$(sha256sum "$ROOT/package-lock.json" | cut -c1-16) $(node -p 'process.versions.node')"
  have="$(cat "$marker" 2>/dev/null || true)"
  if [ "$want" != "$have" ]; then
    say "npm ci"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed (see above)."
    printf '%s' "$want" > "$marker"
  else
    say "node_modules up to date"
  fi
}

check_node
ensure_dtm
ensure_go_peer
ensure_databases
ensure_node_modules
