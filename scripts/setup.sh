#!/usr/bin/env bash
# Installs what ftengine needs to build and test (Debian 12), then configures and builds.
#
#   scripts/setup.sh [release] [debug] [asan]...   (default: release)
#
# Idempotent and non-interactive: packages already present are not touched, apt-get update runs
# only when something is missing, and an up-to-date build tree costs one ninja no-op.
# Build trees: build/release (Release), build/debug (Debug), build/asan (Debug + ASan + UBSan).
# FT_WERROR=ON in the environment turns warnings into errors (scripts/test.sh and CI set it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(
  gcc g++ binutils cmake ninja-build pkg-config ccache git
  libisal-dev libibverbs-dev librdmacm-dev libhwloc-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev
  clang-format
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "setup: installing ${missing[*]}"
  as_root=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    as_root=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -q
  "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

builds=("$@")
((${#builds[@]} > 0)) || builds=(release)
werror=${FT_WERROR:-OFF}
for build in "${builds[@]}"; do
  case "$build" in
    release) flags=(-DCMAKE_BUILD_TYPE=Release) ;;
    debug) flags=(-DCMAKE_BUILD_TYPE=Debug) ;;
    asan) flags=(-DCMAKE_BUILD_TYPE=Debug -DFT_SANITIZE=ON) ;;
    *) echo "setup: unknown build '$build' (release, debug or asan)" >&2; exit 2 ;;
  esac
  # Configure every time (a second or two): options are set explicitly, so a tree configured by
  # hand with other options is brought back to what this script promises.
  cmake -S . -B "build/$build" -G Ninja "${flags[@]}" -DFT_WERROR="$werror" \
    -DFT_BUILD_TESTS=ON -DFT_BUILD_BENCH=ON >/dev/null
  echo "setup: building build/$build"
  cmake --build "build/$build"
done
