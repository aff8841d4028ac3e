#!/bin/sh
# Redundancy gate for a CI pipeline: fail when any checkpoint in a folder has a conv layer whose
# mean filter-redundancy score is above a bound. Any POSIX shell, orthocli on the PATH (no PyTorch
# needed: pip install orthocli without the torch extra).
#
#   sh score-gate.sh FOLDER [BOUND] [more orthocli score options, e.g. --exclude conv1]
#
# Writes the JSON report (one document for all checkpoints, schema 2) to $ORTHOCLI_REPORT
# (default score-report.json) for the pipeline to keep. Exits with orthocli's code: 0 every
# checkpoint passed, 1 one failed the gate, 3/4/6 one could not be scored, 2 a usage error (a bad
# option, a pattern that names no layer of a checkpoint, a file that needs PyTorch): the highest wins.
set -u
if [ $# -lt 1 ]; then
    echo "usage: sh score-gate.sh FOLDER [BOUND] [orthocli score options]" >&2
    exit 2
fi
folder=$1
bound=${2:-0.5}
[ $# -ge 2 ] && shift 2 || shift 1
report=${ORTHOCLI_REPORT:-score-report.json}

# One pass: the JSON to the report; which checkpoint failed and why goes to stderr, into the log.
orthocli score "$folder" --fail-above "$bound" --json "$@" >"$report"
status=$?
case $status in
    0) echo "redundancy gate passed: every checkpoint in $folder has layer means <= $bound (report: $report)" ;;
    1) echo "redundancy gate FAILED: see the checkpoints named above (report: $report)" >&2 ;;
    *) echo "redundancy gate could not check every checkpoint (exit $status; report: $report)" >&2 ;;
esac
exit $status
