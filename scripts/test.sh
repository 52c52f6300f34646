#!/usr/bin/env bash
# The whole test suite: set up, build Release and ASan+UBSan (warnings are errors), check the
# format, run every ctest test in both builds (and, after Release's, install it into a temporary
# prefix and build and run C and C++ programs against it: scripts/test-install.sh), then the
# `rdma` label (real verbs) in Release:
# directly when this machine has an RDMA device, otherwise inside the soft-RoCE VM of
# ../shared/rxe-vm when it exists. Under CI=true the rdma tests must run; elsewhere a run without
# any way to get verbs says loudly that it skipped them. Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export FT_WERROR=ON
bash scripts/setup.sh release asan

status=0
bash scripts/format.sh --check || status=1

jobs=$(nproc 2>/dev/null || echo 2)
echo "== ctest: Release"
ctest --test-dir build/release --output-on-failure -j"$jobs" -LE rdma || status=1
echo "== install: the Release tree into a temporary prefix, used by C and C++ projects"
bash scripts/test-install.sh build/release || status=1
echo "== ctest: ASan+UBSan"
ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
  ctest --test-dir build/asan --output-on-failure -j"$jobs" -LE rdma || status=1

echo "== ctest: rdma (real verbs)"
rxe_vm=../shared/rxe-vm/rxe-vm
if compgen -G "/sys/class/infiniband/*" >/dev/null; then
  ctest --test-dir build/release --output-on-failure -L rdma || status=1
elif [[ -x "$rxe_vm" ]]; then
  # The VM emulates its CPUs: one test at a time, a generous bound on the whole run.
  "$rxe_vm" --timeout 1800 -- ctest --test-dir build/release --output-on-failure -L rdma ||
    status=1
elif [[ "${CI:-}" == "true" ]]; then
  echo "test.sh: no RDMA device and no $rxe_vm: CI must run the rdma tests" >&2
  status=1
else
  echo "################################################################################" >&2
  echo "test.sh: SKIPPED the rdma tests: no RDMA device here and no $rxe_vm." >&2
  echo "         Run them on an RDMA machine: ctest --test-dir build/release -L rdma" >&2
  echo "################################################################################" >&2
fi

if ((status != 0)); then echo "test.sh: FAILED" >&2; else echo "test.sh: all passed"; fi
exit $status
