#!/usr/bin/env bash
# clang-format every C/C++ file the repository tracks.  --check: change nothing, fail on a diff.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mapfile -t files < <(git ls-files '*.h' '*.cc' '*.c' '*.cpp')
((${#files[@]} > 0)) || exit 0
if [[ "${1:-}" == "--check" ]]; then
  clang-format --dry-run --Werror "${files[@]}"
  echo "format: ${#files[@]} files clean"
else
  clang-format -i "${files[@]}"
fi
