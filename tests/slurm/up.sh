#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for testing profiles/slurm (see docs/operating.md,
# "A SLURM cluster on one machine"). Run as root:
#
#   tests/slurm/up.sh      # installs and starts munge, MariaDB, slurmdbd, slurmctld, slurmd
#   tests/slurm/down.sh    # stops what this script started, nothing else
#
# What it builds: Debian's slurm-wlm (slurmctld + slurmd), slurmdbd, munge and MariaDB, installed
# with apt-get when missing. One node (this host, its CPUs, 3/4 of its memory), one default
# partition `cpu`, no cgroups (proctrack/linuxproc, task/none), and job accounting in slurmdbd:
# `sacct` has no other source since SLURM 17 (the filetxt accounting store was removed; jobcomp
# files are not read by sacct), and the Snakemake SLURM plugin polls job states with sacct.
# Accounting enforces associations, as most clusters do, so a job needs an account: the script
# creates account `asge` for the calling user.
#
# State (configs' runtime files, spools, logs, the MariaDB data, pid files) lives in
# $ASGE_SLURM_STATE (default /var/tmp/asge-slurm). The config files go where the SLURM commands
# look for them, /etc/slurm/{slurm,slurmdbd}.conf; a slurm.conf that this script did not write
# (a real cluster's) is never overwritten.
set -euo pipefail

STATE=${ASGE_SLURM_STATE:-/var/tmp/asge-slurm}
CLUSTER=asge
ACCOUNT=${ASGE_SLURM_ACCOUNT:-asge}
PARTITION=cpu
DB_PORT=${ASGE_SLURM_DB_PORT:-3307}  # not 3306: leaves a system MariaDB alone
MARK="# written by asge tests/slurm/up.sh"
USER_NAME=${SUDO_USER:-$(id -un)}

say() { echo "slurm-up: $*"; }
die() { echo "slurm-up: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts system daemons)"

# --- packages ---------------------------------------------------------------------------------
need=()
for cmd in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db; do
    command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
export PATH=$PATH:/usr/sbin
if [ ${#need[@]} -gt 0 ]; then
    say "installing slurm-wlm, slurmdbd, munge, mariadb-server (missing: ${need[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm slurmdbd munge mariadb-server >/dev/null
fi
say "slurm $(dpkg-query -W -f '${Version}' slurmctld 2>/dev/null || slurmctld -V)"

for f in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf; do
    if [ -f "$f" ] && ! grep -qF "$MARK" "$f"; then
        die "$f exists and was not written by this script (a real cluster's config?); not touching it"
    fi
done

mkdir -p "$STATE"/{ctld,spool,log,pids}
chmod 755 "$STATE"; chown root:root "$STATE/pids"
STARTED=$STATE/started  # pid files of the daemons this script started, one a line (down.sh reads it)
touch "$STARTED"

# pid of a daemon we started earlier that is still alive, or nothing
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null && cat "$1"; }
# record a pid file as ours (once)
mine() { grep -qxF "$1" "$STARTED" || echo "$1" >>"$STARTED"; }
wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds
    local n=$1 what=$2; shift 2
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
    die "$what did not come up within ${n}s; see the logs in $STATE/log"
}

# --- munge: authentication between the SLURM commands and daemons --------------------------------
[ -s /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; }
if munge -n </dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
else
    install -d -o munge -g munge -m 755 /run/munge "$STATE/pids/munge"
    install -o munge -g munge -m 640 /dev/null "$STATE/log/munged.log"
    runuser -u munge -- munged --pid-file="$STATE/pids/munge/munged.pid" --log-file="$STATE/log/munged.log"
    mine "$STATE/pids/munge/munged.pid"
    wait_for 20 munged sh -c 'munge -n </dev/null | unmunge'
    say "munged started"
fi

# --- MariaDB: the accounting database of slurmdbd (private data folder and port) ----------------
DB=$STATE/mysql
PW_FILE=$STATE/db.password
[ -s "$PW_FILE" ] || { head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$PW_FILE"; chmod 600 "$PW_FILE"; }
DB_PW=$(cat "$PW_FILE")
if [ ! -d "$DB/mysql" ]; then
    mkdir -p "$DB"; chown mysql:mysql "$DB"
    mariadb-install-db --user=mysql --datadir="$DB" --auth-root-authentication-method=socket \
        --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: $STATE/log/mariadb-install.log"
fi
install -d -o mysql -g mysql -m 755 "$STATE/pids/mysql"
if alive "$STATE/pids/mysql/mariadb.pid" >/dev/null; then
    say "MariaDB already running"
else
    install -o mysql -g mysql -m 640 /dev/null "$STATE/log/mariadb.log"
    # setsid + nohup: the server outlives this script; it writes its own pid file
    setsid nohup mariadbd --user=mysql --datadir="$DB" --socket="$DB/mysqld.sock" --port="$DB_PORT" \
        --bind-address=127.0.0.1 --pid-file="$STATE/pids/mysql/mariadb.pid" --log-error="$STATE/log/mariadb.log" \
        </dev/null >/dev/null 2>&1 &
    mine "$STATE/pids/mysql/mariadb.pid"
    wait_for 60 MariaDB mariadb --socket="$DB/mysqld.sock" -e "select 1"
    say "MariaDB started on 127.0.0.1:$DB_PORT"
fi
mariadb --socket="$DB/mysqld.sock" <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PW';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PW';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# --- configuration ------------------------------------------------------------------------------
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))
mkdir -p /etc/slurm
umask 077
cat >/etc/slurm/slurmdbd.conf <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=$STATE/pids/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PW
StorageLoc=slurm_acct_db
EOF
umask 022
cat >/etc/slurm/slurm.conf <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/pids/slurmctld.pid
SlurmdPidFile=$STATE/pids/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# no cgroups: processes tracked through /proc, no task confinement
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# memory requests are enforced, as on a real cluster (there by cgroups): a job step whose processes
# use more than its --mem (PSS, polled every 2 s) is killed, so a preset that asks too little fails
# the test instead of passing here and failing there
JobAcctGatherParams=OverMemoryKill,UsePss
JobAcctGatherFrequency=task=2
MpiDefault=none
# jobs get cores and memory as requested (--cpus-per-task, --mem)
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# job accounting in slurmdbd (what sacct reads); jobs need a valid account
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageEnforce=associations
# keep sbatch --comment (the Snakemake plugin writes the rule and wildcards there) for sacct
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
ReturnToService=2
# finished jobs stay visible to squeue/scontrol for 5 minutes (sacct keeps them for good)
MinJobAge=300
KillWait=10
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

# --- slurmdbd, the cluster's accounts, slurmctld, slurmd ----------------------------------------
start_daemon() {  # start_daemon NAME PIDFILE COMMAND...: starts it unless our earlier one still runs
    local name=$1 pidfile=$2; shift 2
    if alive "$pidfile" >/dev/null; then say "$name already running"; return; fi
    "$@" || die "$name failed to start; see $STATE/log/$name.log"
    mine "$pidfile"
    wait_for 30 "$name pid file" test -s "$pidfile"
    say "$name started (pid $(cat "$pidfile"))"
}
start_daemon slurmdbd "$STATE/pids/slurmdbd.pid" slurmdbd
wait_for 60 slurmdbd sacctmgr -n list cluster
sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true       # exists after the first run
sacctmgr -i -Q add account "$ACCOUNT" Cluster="$CLUSTER" Description="asge test account" Organization=asge >/dev/null 2>&1 || true
sacctmgr -i -Q add user "$USER_NAME" Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -n -P list assoc user="$USER_NAME" account="$ACCOUNT" format=account | grep -qx "$ACCOUNT" \
    || die "could not create the association $USER_NAME/$ACCOUNT in slurmdbd (see $STATE/log/slurmdbd.log)"

start_daemon slurmctld "$STATE/pids/slurmctld.pid" slurmctld
start_daemon slurmd "$STATE/pids/slurmd.pid" slurmd
node_idle() { sinfo -h -N -o %T | grep -Eq '^(idle|mixed|allocated)'; }
for _ in $(seq 60); do
    node_idle && break
    # a node that was down when slurmctld last ran comes back with ReturnToService=2; nudge it
    scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    sleep 1
done
node_idle || die "the node did not become idle: $(sinfo -N -l 2>&1); see $STATE/log/slurmd.log"
sinfo
say "ready: export SBATCH_ACCOUNT=$ACCOUNT (or --config slurm={account: $ACCOUNT}); stop it with tests/slurm/down.sh"
