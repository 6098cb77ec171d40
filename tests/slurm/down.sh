#!/usr/bin/env bash
# Stop the daemons that tests/slurm/up.sh started, by their pid files (listed in
# $ASGE_SLURM_STATE/started), in reverse order of starting: slurmd, slurmctld, slurmdbd, MariaDB,
# munged. Daemons that were running before up.sh (e.g. a system munged) are left alone. The state
# folder (accounting database, logs) and the config files stay, so the next up.sh is quick and
# `sacct` still shows earlier jobs.
set -uo pipefail

STATE=${ASGE_SLURM_STATE:-/var/tmp/asge-slurm}
STARTED=$STATE/started
[ -f "$STARTED" ] || { echo "slurm-down: nothing to stop ($STARTED does not exist)"; exit 0; }

status=0
for pidfile in $(tac "$STARTED"); do
    name=$(basename "$pidfile" .pid)
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "slurm-down: $name is not running"
        continue
    fi
    kill -TERM "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "slurm-down: $name (pid $pid) did not stop within 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null
        status=1
    fi
    echo "slurm-down: stopped $name (pid $pid)"
done
# slurmd leaves its step daemons (slurmstepd) of jobs still running; those were started for us too
: >"$STARTED"
exit $status
