#!/usr/bin/env bash
# The test command (`npm test`): all set-up (DTM server, databases, npm ci), then
# scripts/run-jest.mjs: the library build and a type check of everything, then every test against
# the real DTM server and databases. The last line of output is "N passed, N failed"; the exit code
# is non-zero on any failure.
# Arguments go to jest, e.g. `npm test -- test/e2e/harness`.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fail() { echo "$1"; echo "0 passed, 1 failed"; exit 1; }
bash scripts/setup.sh || fail "set-up failed (see above)"
exec node scripts/run-jest.mjs "$@"
