#!/usr/bin/env bash
# The case study cold, as a stranger runs it: set-up, then `make casestudy` with no caches. Run it in a fresh clone
# (empty .cache/ and artifacts/, no pip cache), from the project root:
#     ../shared/tools/fresh-clone-test.sh "bash bench/cold_casestudy.sh"          # full mode (hours on 2 cores)
#     ../shared/tools/fresh-clone-test.sh "bash bench/cold_casestudy.sh FAST=1"   # the quick path
# It prints the set-up's and the case study's wall time; `make casestudy` prints each notebook's time and peak RSS
# as it finishes. Record the run, finished or stopped midway, with
#     .venv/bin/python bench/e2e.py --skip-tests --cold-log CLONE/log --machine "..."
set -u
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "COMMIT $(git rev-parse --short HEAD) START $(date -u +%FT%TZ)"
t0=$(date +%s)
make setup scale || exit $?
t1=$(date +%s)
echo "SETUP_SECONDS $((t1 - t0)) at $(date -u +%FT%TZ)"
/usr/bin/time -v make casestudy "$@"
rc=$?
echo "CASESTUDY_SECONDS $(($(date +%s) - t1)) rc $rc at $(date -u +%FT%TZ)"
exit $rc
