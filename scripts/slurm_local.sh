#!/usr/bin/env bash
# A real single-node Slurm cluster on localhost, for trying the Slurm launcher on a workstation
# and for the test suite (tests/test_slurm.py). Debian/Ubuntu: apt-get install slurm-wlm munge.
#
#   scripts/slurm_local.sh start [--cpus N]   # idempotent; waits (bounded) until the node is idle
#   scripts/slurm_local.sh stop               # stops only the daemons this script started, by pid
#   scripts/slurm_local.sh status             # exit 0 when the cluster answers
#   eval "$(scripts/slurm_local.sh env)"      # SLURM_CONF and PATH for sbatch/squeue/sacct
#
# Everything lives in $SLURM_LOCAL_DIR (default ~/.cache/robustsr-bench/slurm): slurm.conf, spool
# and state folders, logs, pid files and bin/sacct. That last one is a stand-in answering from
# `squeue -t all`, because without an accounting database the real sacct fails and submitit polls
# sacct. Daemons run as root (SlurmUser=root), so start/stop need root; no systemd, no cgroups.
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-${HOME:-/root}/.cache/robustsr-bench/slurm}"
CTLD_PORT="${SLURM_LOCAL_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_LOCAL_SLURMD_PORT:-6818}"
WAIT_S="${SLURM_LOCAL_WAIT_S:-60}"
CPUS=""
export SLURM_CONF="$DIR/slurm.conf"
export PATH="$DIR/bin:$PATH"

die() { echo "slurm_local: $*" >&2; exit 1; }
log() { echo "slurm_local: $*" >&2; }

alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Bounded wait: wait_for SECONDS DESCRIPTION COMMAND...
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || die "timed out after ${limit}s waiting for $what (logs in $DIR)"
    sleep 0.5
  done
}

munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

node_ready() { sinfo -h -N -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; }

write_sacct() {
  mkdir -p "$DIR/bin"
  cat >"$DIR/bin/sacct" <<'EOF'
#!/usr/bin/env bash
# sacct stand-in (no accounting database): answers `sacct -o JobID,State,NodeList --parsable2
# -j ID ...` from `squeue -t all`, which keeps finished jobs for MinJobAge seconds.
ids=()
while (($#)); do
  case "$1" in -j|--jobs) ids+=("$2"); shift 2 ;; -j*) ids+=("${1#-j}"); shift ;; *) shift ;; esac
done
echo "JobID|State|NodeList"
((${#ids[@]})) || exit 0
IFS=, ; squeue -h -r -t all -j "${ids[*]}" -o '%i|%T|%N' 2>/dev/null || true
EOF
  chmod +x "$DIR/bin/sacct"
}

write_conf() {
  local host cpus mem
  host="$(hostname -s)"
  cpus="${CPUS:-$(nproc)}"
  mem=$(( $(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo) * 8 / 10 ))
  mkdir -p "$DIR/ctld" "$DIR/spool"
  cat >"$SLURM_CONF" <<EOF
# Written by scripts/slurm_local.sh: one node, localhost, no accounting, no cgroups.
ClusterName=robustsr-local
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_interval=2
SlurmdParameters=config_overrides
MpiDefault=none
KillWait=5
ReturnToService=2
MinJobAge=3600
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  munge_ok && return 0
  [[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  wait_for 15 munged munge_ok
  cp /run/munge/munged.pid "$DIR/munged.pid"
  log "started munged (pid $(cat "$DIR/munged.pid"))"
}

start() {
  command -v slurmctld >/dev/null || die "slurmctld not found; install: apt-get install slurm-wlm munge"
  [[ $(id -u) == 0 ]] || die "start needs root (the daemons run as root)"
  mkdir -p "$DIR"
  if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid"; then
    wait_for "$WAIT_S" "the node to become idle" node_ready
    log "already running ($SLURM_CONF)"
    return 0
  fi
  write_sacct
  write_conf
  start_munge
  alive "$DIR/slurmctld.pid" || slurmctld
  alive "$DIR/slurmd.pid" || slurmd
  wait_for "$WAIT_S" "the node to become idle" node_ready
  log "cluster up: $(sinfo -h -o '%P %D %t %c' | head -1) ($SLURM_CONF)"
}

stop_pid() {
  local name=$1 file="$DIR/$1.pid" pid
  alive "$file" || { rm -f "$file"; return 0; }
  pid=$(cat "$file")
  kill "$pid"
  local deadline=$((SECONDS + 15))
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$file"
  log "stopped $name (pid $pid)"
}

stop() {
  [[ -d "$DIR" ]] || return 0
  # Jobs first, so none is left running without a slurmd to reap it.
  if alive "$DIR/slurmctld.pid"; then scancel --full --user="$(id -un)" 2>/dev/null || true; fi
  stop_pid slurmd
  stop_pid slurmctld
  stop_pid munged  # only ours: the pid file exists only when this script started munged
}

case "${1:-}" in
  start)
    shift
    while (($#)); do
      case "$1" in --cpus) CPUS="$2"; shift 2 ;; *) die "unknown option $1" ;; esac
    done
    start ;;
  stop) stop ;;
  status) node_ready && sinfo ;;
  env) printf 'export SLURM_CONF=%q\nexport PATH=%q:"$PATH"\n' "$SLURM_CONF" "$DIR/bin" ;;
  *) echo "usage: $0 start [--cpus N] | stop | status | env" >&2; exit 2 ;;
esac
