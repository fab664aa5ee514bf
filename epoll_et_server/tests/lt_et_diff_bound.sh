#!/bin/sh
# lt_et_diff_bound.sh LT_SOURCE ET_SOURCE BOUND
#
# The lesson of labs/04-epoll-et/the-diff.md: epoll_et_server.cpp is
# epoll_lt_server.cpp with the edge-triggered changes and nothing else. The
# measure is the number of lines `diff LT ET` prints starting with "<" or ">"
# (a changed line counts once on each side); it must not exceed BOUND. Fails
# too if a file is missing or the two are identical.
set -u
lt=$1 et=$2 bound=$3
for file in "$lt" "$et"; do
  [ -r "$file" ] || { echo "cannot read $file"; exit 1; }
done
changed=$(diff "$lt" "$et" | grep -c '^[<>]')
echo "diff $(basename "$lt") $(basename "$et"): $changed changed lines (bound $bound)"
if [ "$changed" -eq 0 ]; then
  echo "the two files are identical"
  exit 1
fi
if [ "$changed" -gt "$bound" ]; then
  echo "the LT -> ET diff grew past $bound lines: keep the two files on one skeleton"
  echo "(same names, same order), so that the diff shows only what edge-triggering changes"
  exit 1
fi
