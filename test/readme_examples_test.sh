#!/usr/bin/env bash
# README's examples are the compiled, tested programs of examples/, verbatim: every fenced block
# that follows a line "<!-- example: FILE -->" must occur, byte for byte, in FILE, and both
# examples must be shown. Fails naming the block that drifted.
#
#   test/readme_examples_test.sh README.md
set -euo pipefail
readme=$1
root=$(dirname "$readme")
status=0
shown=""
file=""
inside=0
block=""
first=0
number=0
while IFS= read -r line || [[ -n "$line" ]]; do
  number=$((number + 1))
  if ((inside == 0)) && [[ "$line" =~ ^\<\!--\ example:\ ([^ ]+)\ --\>$ ]]; then
    file=${BASH_REMATCH[1]}
  elif ((inside == 0)) && [[ -n "$file" && "$line" == '```'* ]]; then
    inside=1
    block=""
    first=$((number + 1))
  elif ((inside == 1)) && [[ "$line" == '```' ]]; then
    # "x" keeps the file's trailing newlines, which $(...) would strip.
    content=$(cat "$root/$file" && echo x)
    if [[ "$content" == *"$block"* ]]; then
      shown+=" $file"
    else
      echo "README.md:$first: this block is not verbatim in $file" >&2
      status=1
    fi
    inside=0
    file=""
  elif ((inside == 1)); then
    block+="$line"$'\n'
  fi
done <"$readme"
for example in examples/c/loopback_checkpoint.c examples/cpp/loopback_checkpoint.cc; do
  if [[ " $shown " != *" $example "* ]]; then
    echo "README.md shows no block of $example" >&2
    status=1
  fi
done
((status == 0)) && echo "README examples: verbatim"
exit $status
