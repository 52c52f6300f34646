#!/usr/bin/env bash
# Installs ftengine into a temporary prefix and uses it as a new user would, from outside the
# source tree: a C-only and a C++ CMake project (find_package(ftengine)), then plain cc and c++
# commands with `pkg-config --cflags --libs ftengine`; each against libftengine.so and against
# libftengine.a. Every program built is the README's example (examples/), and must run to the
# end. Also checks what the prefix holds: the public headers alone, each compiling by itself;
# libftengine.so with its SONAME and nothing but the public API exported; ftbench and ftrun.
#
#   scripts/test-install.sh [BUILD_DIR]     (default build/release, already built)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build/release}
[[ -f "$build/CMakeCache.txt" ]] || { echo "test-install: no build tree at $build" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ftengine-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
failures=0
fail() { echo "test-install: FAILED: $*" >&2; failures=$((failures + 1)); }
step() { echo "== test-install: $*"; }

step "cmake --install $build --prefix <tmp>"
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(find "$prefix" -name 'libftengine.so.*.*' -printf '%h\n' | head -1)
[[ -n "$libdir" ]] || { echo "test-install: no libftengine.so installed" >&2; exit 1; }

step "what the prefix holds"
for file in bin/ftbench bin/ftrun include/ftengine/ftengine.h include/ftengine/engine.h \
  include/ftengine/loopback_world.h; do
  [[ -e "$prefix/$file" ]] || fail "$file is not installed"
done
for file in "$libdir/libftengine.a" "$libdir/pkgconfig/ftengine.pc" \
  "$libdir/cmake/ftengine/ftengineConfig.cmake"; do
  [[ -e "$file" ]] || fail "${file#"$prefix"/} is not installed"
done
internal=$(find "$prefix/include" -type f ! -path "$prefix/include/ftengine/*")
[[ -z "$internal" ]] || fail "headers outside include/ftengine/ installed: $internal"
"$prefix/bin/ftrun" --help >/dev/null || fail "installed ftrun --help"
"$prefix/bin/ftbench" --help >/dev/null || fail "installed ftbench --help"
soname=$(readelf -d "$libdir/libftengine.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ "$soname" == libftengine.so.0 ]] || fail "SONAME is '$soname', not libftengine.so.0"
# Exported: the C API (ft_*) and the C++ API (ft::..., demangled), nothing else; and every
# function ftengine.h declares.
exported=$(nm -D --defined-only "$libdir/libftengine.so" | awk '$2 != "A" {print $3}')
stray=$(echo "$exported" | c++filt | grep -v -E '^(ft_[a-z_]+|ft::.*)@@FTENGINE_0$' || true)
[[ -z "$stray" ]] || fail "libftengine.so exports more than the public API:"$'\n'"$stray"
for fn in $(grep -o -E '\bft_[a-z_]+\(' include/ftengine/ftengine.h | tr -d '(' | sort -u); do
  grep -q -x "$fn@@FTENGINE_0" <<<"$exported" || fail "libftengine.so does not export $fn"
done
# Each installed header compiles alone against the prefix (none needs an uninstalled one).
for header in "$prefix"/include/ftengine/*.h; do
  echo "#include \"ftengine/$(basename "$header")\"" |
    c++ -std=c++20 -fsyntax-only -Wall -Wextra -Werror -I"$prefix/include" -x c++ - ||
    fail "$(basename "$header") does not compile alone from the prefix"
done
for header in ftengine.h export.h; do
  echo "#include \"ftengine/$header\"" |
    cc -std=c11 -fsyntax-only -Wall -Wextra -Werror -I"$prefix/include" -x c - ||
    fail "$header does not compile as C from the prefix"
done

# Runs a built example: it prints its line and exits 0.
run_example() {
  local what=$1 program=$2 output
  if output=$("$program" 2>&1) && grep -q "8 nodes checkpointed and read back" <<<"$output"; then
    echo "   ok: $what"
  else
    fail "$what: $output"
  fi
}
# A static build must not need libftengine.so at run time.
check_static() {
  if readelf -d "$2" | grep -q 'NEEDED.*libftengine'; then fail "$1 needs libftengine.so"; fi
}

for language in c cpp; do
  for linkage in shared static; do
    step "CMake, find_package: examples/$language ($linkage)"
    dir=$tmp/cmake-$language-$linkage
    static=OFF
    [[ $linkage == static ]] && static=ON
    if cmake -S "examples/$language" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$prefix" -DFTENGINE_STATIC=$static >"$dir.log" 2>&1 &&
      cmake --build "$dir" >>"$dir.log" 2>&1; then
      run_example "cmake $language $linkage" "$dir/loopback_checkpoint"
      if [[ $linkage == static ]]; then check_static "cmake $language static" "$dir/loopback_checkpoint"; fi
    else
      fail "cmake $language $linkage build:"$'\n'"$(tail -30 "$dir.log")"
    fi
  done
done

export PKG_CONFIG_PATH=$libdir/pkgconfig
step "pkg-config: $(pkg-config --cflags --libs ftengine)"
pc_libdir=$(pkg-config --variable=libdir ftengine)
shared_libs=$(pkg-config --libs ftengine)
# --static adds Libs.private and Requires.private; -l:libftengine.a makes the linker take the
# archive even though the shared library lies next to it.
static_libs=$(pkg-config --static --libs ftengine | sed 's/-lftengine\b/-l:libftengine.a/')
cflags=$(pkg-config --cflags ftengine)
# pc_example NAME COMPILER SOURCE LINKAGE: builds SOURCE with plain compiler commands and runs it.
pc_example() {
  local name=$1 compiler=$2 source=$3 linkage=$4 program=$tmp/pc-$1-$4 libs std=-std=c11
  [[ $compiler == c++ ]] && std=-std=c++20
  if [[ $linkage == static ]]; then libs=$static_libs; else libs="$shared_libs -Wl,-rpath,$pc_libdir"; fi
  # shellcheck disable=SC2086 # the flags are words
  if ! $compiler $std -O2 $cflags "$source" -o "$program" $libs; then
    fail "pkg-config $name $linkage: $compiler does not build $source"
    return
  fi
  run_example "pkg-config $name $linkage" "$program"
  if [[ $linkage == static ]]; then check_static "pkg-config $name static" "$program"; fi
}
for linkage in shared static; do
  pc_example c cc examples/c/loopback_checkpoint.c $linkage
  pc_example cpp c++ examples/cpp/loopback_checkpoint.cc $linkage
done

if ((failures > 0)); then
  echo "test-install: $failures failure(s)" >&2
  exit 1
fi
echo "test-install: all passed"
