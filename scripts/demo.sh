#!/usr/bin/env bash
# The main job: set up, build Release, run ftbench on the built-in loopback fabric.
# Extra arguments go to ftbench encode, e.g. scripts/demo.sh --k 10 --m 4 --json
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh release
exec build/release/bin/ftbench encode "$@"
