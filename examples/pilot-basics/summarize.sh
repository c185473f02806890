#!/bin/sh
# Averages the pi estimates and reports the heat run: the last step of the
# example, a command task that reads what the function tasks wrote.
set -eu
run_dir=$1
cat "$run_dir"/tasks/estimate/pi.*.txt |
  awk '{ s += $1; n += 1 } END { printf "pi from %d estimates: %.6f (error %.2e)\n", n, s / n, s / n - 3.14159265358979 }'
cat "$run_dir"/tasks/heat/heat.txt
