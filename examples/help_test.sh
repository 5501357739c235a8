#!/usr/bin/env bash
# Every example program given as an argument (a path to its binary) answers -h and --help with
# exit 0 and "usage: <name> ..." on stdout, each flag on a line of its own with its default, and
# an unknown flag with exit 2, the usage on stderr and nothing on stdout.
set -uo pipefail
fail=0
for bin in "$@"; do
  name=$(basename "$bin")
  for flag in -h --help; do
    out=$("$bin" "$flag" 2>/dev/null); rc=$?
    if [[ $rc -ne 0 || "$out" != "usage: $name "* ]]; then
      echo "FAIL: $name $flag: exit $rc, stdout: $out"; fail=1
    fi
    if ! grep -q -- '--help' <<<"$out" || ! grep -q 'default' <<<"$out"; then
      echo "FAIL: $name $flag: no --help or default line in: $out"; fail=1
    fi
  done
  err=$("$bin" --no-such-flag 2>&1 >/dev/null); rc=$?
  out=$("$bin" --no-such-flag 2>/dev/null)
  if [[ $rc -ne 2 || "$err" != *"usage: $name "* || -n "$out" ]]; then
    echo "FAIL: $name --no-such-flag: exit $rc, stderr: $err, stdout: $out"; fail=1
  fi
  [[ $fail -eq 0 ]] && echo "ok: $name"
done
exit $fail
