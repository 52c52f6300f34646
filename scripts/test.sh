#!/usr/bin/env bash
# The whole test suite: set up, build Release and ASan+UBSan (warnings are errors), check the
# format, run every ctest test in both builds. Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export FT_WERROR=ON
bash scripts/setup.sh release asan

status=0
bash scripts/format.sh --check || status=1

jobs=$(nproc 2>/dev/null || echo 2)
echo "== ctest: Release"
ctest --test-dir build/release --output-on-failure -j"$jobs" || status=1
echo "== ctest: ASan+UBSan"
ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  ctest --test-dir build/asan --output-on-failure -j"$jobs" || status=1

if ((status != 0)); then echo "test.sh: FAILED" >&2; else echo "test.sh: all passed"; fi
exit $status
