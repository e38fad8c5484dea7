#!/usr/bin/env bash
# The test command (`npm test`): all set-up (DTM server, databases, npm ci), then
# scripts/run-jest.mjs: the library build and a type check of everything, then every test against
# the real DTM server and databases; then the same again on a second Node.js (scripts/second-node.sh:
# Node.js 24 unless TEST_SECOND_NODE says otherwise; TEST_SECOND_NODE=none skips it). The last line of
# output is "N passed, N failed" over both runs; the exit code is non-zero on any failure.
# Arguments go to jest (in both runs), e.g. `npm test -- test/e2e/harness`. The benchmarks' smoke runs
# (test/e2e/bench-smoke.spec.ts), the docs' type check, the files on DTM's and the databases' own behaviour and the
# soaks are in the first run only (FIRST_RUN_ONLY in jest.config.js, which says why), and so are the type check,
# the build and ESLint (run-jest.mjs --no-checks): neither depends on the Node.js that runs it.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fail() { echo "$1"; echo "0 passed, 1 failed"; exit 1; }
bash scripts/setup.sh || fail "set-up failed (see above)"
second="$(bash scripts/second-node.sh)" || fail "installing the second Node.js failed (see above)"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
summaries=()
failures=() # each run's failed tests, named again at the end (scripts/run-jest.mjs prints them)
# run <label> <node> [jest args]: the suite on <node> (first on PATH, so that the npm and node the tests start are it too)
run() {
  local label="$1" node="$2"; shift 2
  PATH="$(dirname "$node"):$PATH" "$node" scripts/run-jest.mjs "$@" 2>&1 | tee "$logs/run.log"
  summaries+=("$label: $(tail -n 1 "$logs/run.log")")
  # each run's jest results kept apart (the next run starts by removing .test-results/jest.json): per-file times
  cp .test-results/jest.json ".test-results/jest-node$("$node" -p 'process.versions.node.split(".")[0]').json" 2> /dev/null || true
  while IFS= read -r line; do failures+=("$label: $line"); done < <(grep -a -E '^(failed: |failed to run: )' "$logs/run.log")
}
run "Node.js $(node -v)" "$(command -v node)" "$@"
[ -n "$second" ] && { echo; echo "=== the tests again on Node.js $("$second" -v), but those of FIRST_RUN_ONLY (jest.config.js), tsc and ESLint ==="; NESTJS_DTM_SECOND_NODE_RUN=1 run "Node.js $("$second" -v)" "$second" --no-checks "$@"; }

passed=0 failed=0
echo
for line in "${failures[@]}"; do echo "$line"; done
for line in "${summaries[@]}"; do
  echo "$line"
  if [[ "$line" =~ :\ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    passed=$((passed + BASH_REMATCH[1])); failed=$((failed + BASH_REMATCH[2]))
  else
    failed=$((failed + 1)) # no summary line: the run died before printing it
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
