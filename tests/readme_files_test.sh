#!/usr/bin/env bash
# README.md shows the files of examples/first/ ("Your first service") verbatim: each in the code
# block that follows a line "`examples/first/<file>`:". Checks that every file is shown, that
# each block equals its file, and that the line count README states, "(N lines", is
# `wc -l examples/first/*`. Usage: readme_files_test.sh README.md examples/first/<file>...
set -euo pipefail
readme=$1
shift
status=0
total=0
for f in "$@"; do
  shown=$(awk -v name="\`$f\`:" '
    $0 == name {want = 1; next}
    want && /^```/ {if (inside) exit; inside = 1; next}
    inside {print}' "$readme")
  if [ -z "$shown" ]; then
    echo "FAIL: $f is not shown in $readme (a line \`$f\`: then a code block)"
    status=1
  elif ! diff -u <(printf '%s\n' "$shown") "$f"; then
    echo "FAIL: $readme shows $f differently (diff above: README first, then the file)"
    status=1
  else
    echo "ok: $f ($(wc -l < "$f") lines)"
  fi
  total=$((total + $(wc -l < "$f")))
done
if ! grep -q "($total lines" "$readme"; then
  echo "FAIL: $readme does not state \"($total lines\" for examples/first"
  status=1
fi
echo "examples/first: $total lines in all"
exit $status
