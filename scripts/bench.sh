#!/usr/bin/env bash
# Runs one benchmark of bench/ after the usual set-up and build: `bash scripts/bench.sh saga-throughput [-- args]`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
name="$1"; shift
bash scripts/setup.sh >&2
npm run --silent build
node node_modules/typescript/bin/tsc -p tsconfig.json
exec node ".build/bench/$name.js" "$@"
