#!/usr/bin/env bash
# The main job: set up, build Release, run ftbench checkpoint on the built-in loopback fabric
# (8 nodes in this process, 64 MiB each, RS(4,2), verified read-back).
# Extra arguments go to ftbench checkpoint, e.g. scripts/demo.sh --nodes 16 --json
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh release
exec build/release/bin/ftbench checkpoint "$@"
