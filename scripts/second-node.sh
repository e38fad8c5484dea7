#!/usr/bin/env bash
# Prints the path of the second Node.js that `npm test` runs every test on (after the machine's own),
# installing it first when it is not cached: Node.js $TEST_SECOND_NODE (default below), from the npm
# registry's official Linux builds (the package node-linux-<arch>), into .tools/ of this checkout
# (not ~/.cache: some tests run node as another user, who must be able to execute it). Prints
# nothing, saying why on stderr, when there is no second run: TEST_SECOND_NODE=none, the machine's
# Node.js is already of that major version, or no build is published for this platform.
# Why: Nest 12 itself needs Node.js >= 22.12, and Node 24 carries AsyncLocalStorage in
# AsyncContextFrame, which the request context and OpenTelemetry's context ride in.
set -euo pipefail

VERSION="${TEST_SECOND_NODE:-24.22.3}"
say() { printf '[second node] %s\n' "$*" >&2; }

[ "$VERSION" = none ] && { say "TEST_SECOND_NODE=none: the tests run on this machine's Node.js only"; exit 0; }
platform="$(node -p 'process.platform')"
arch="$(node -p 'process.arch')"
if [ "$platform" != linux ] || { [ "$arch" != x64 ] && [ "$arch" != arm64 ]; }; then
  say "no Node.js build on the npm registry for $platform-$arch: the tests run on this machine's Node.js only"
  exit 0
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" = "${VERSION%%.*}" ]; then
  say "this machine's Node.js is already $(node -v): no second run"
  exit 0
fi

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools/node-v$VERSION"
binary="$dir/node_modules/node-linux-$arch/bin/node"
if [ ! -x "$binary" ] || [ "$("$binary" -v 2>/dev/null)" != "v$VERSION" ]; then
  say "installing Node.js $VERSION (npm package node-linux-$arch@$VERSION) into $dir"
  mkdir -p "$dir"
  (cd "$dir" && npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "node-linux-$arch@$VERSION" >&2) \
    || { say "installing Node.js $VERSION failed (above); TEST_SECOND_NODE=none skips the second run"; exit 1; }
  [ "$("$binary" -v 2>/dev/null)" = "v$VERSION" ] || { say "$binary is not Node.js $VERSION after the install"; exit 1; }
fi
printf '%s\n' "$binary"
