#!/usr/bin/env bash
# The main job (`npm run demo`): set-up (as for the tests), build, then the demo in sample-app/demo.ts.
# Options go to the demo: `npm run demo -- --help`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh >&2
npm run --silent build
node node_modules/typescript/bin/tsc -p tsconfig.json
exec node .build/sample-app/demo.js "$@"
