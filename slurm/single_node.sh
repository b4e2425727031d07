#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests and demos (Debian bookworm, root, no systemd).
#
#   slurm/single_node.sh install   apt-get install slurm-wlm munge (the only verb that installs)
#   slurm/single_node.sh up        write slurm.conf, start munged + slurmctld + slurmd, wait for idle
#   slurm/single_node.sh status    daemons and sinfo
#   slurm/single_node.sh down      stop the daemons this script started (by their pid files)
#
# The config goes to /etc/slurm/slurm.conf (where sinfo/sbatch look by default) and carries a marker
# line; a slurm.conf without the marker (a real cluster's) is never overwritten.
# Environment: VIDPRUNE_SLURM_DIR (state, logs, pids; default /var/lib/vidprune-slurm),
# VIDPRUNE_SLURM_PARTITION (default debug), VIDPRUNE_SLURM_WAIT_S (default 60).
set -euo pipefail

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARKER="# written by vidprune slurm/single_node.sh"
BASE="${VIDPRUNE_SLURM_DIR:-/var/lib/vidprune-slurm}"
PARTITION="${VIDPRUNE_SLURM_PARTITION:-debug}"
WAIT_S="${VIDPRUNE_SLURM_WAIT_S:-60}"
MUNGE_RUN=/run/munge
MUNGE_PID="$MUNGE_RUN/munged.pid"
CTLD_PID="$BASE/slurmctld.pid"
SLURMD_PID="$BASE/slurmd.pid"

die() { echo "single_node.sh: $*" >&2; exit 1; }
log() { echo "single_node.sh: $*"; }

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (it starts munged/slurmctld/slurmd)"; }

need_binaries() {
    local missing=()
    for b in munged slurmctld slurmd sinfo sbatch scontrol; do
        command -v "$b" >/dev/null 2>&1 || missing+=("$b")
    done
    [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}. Fix: run 'slurm/single_node.sh install' (apt-get install slurm-wlm munge)"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

short_host() { hostname -s 2>/dev/null || cut -d. -f1 /proc/sys/kernel/hostname; }

cmd_install() {
    need_root
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show slurm-wlm >/dev/null 2>&1; then
        apt-get update -q
    fi
    apt-get install -y -q slurm-wlm munge
}

write_conf() {
    local host cpus mem_mb
    host="$(short_host)"
    cpus="$(nproc)"
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
    if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script (a real cluster config?). Refusing to overwrite it; move it away first."
    fi
    mkdir -p "$CONF_DIR" "$BASE/ctld" "$BASE/d" "$BASE/log"
    cat >"$CONF" <<EOF
$MARKER
ClusterName=vidprune
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job waits for the job credential to expire before it can start again (default 120 s)
AuthInfo=cred_expire=10
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
InactiveLimit=0
SlurmdTimeout=120
SlurmctldTimeout=120
StateSaveLocation=$BASE/ctld
SlurmdSpoolDir=$BASE/d
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    log "wrote $CONF (node $host: $cpus CPUs, ${mem_mb} MB; partition $PARTITION)"
}

start_munge() {
    if pid_alive "$MUNGE_PID"; then
        log "munged already running (pid $(cat "$MUNGE_PID"))"
        return
    fi
    mkdir -p /etc/munge /var/lib/munge /var/log/munge "$MUNGE_RUN"
    if [ ! -s /etc/munge/munge.key ]; then
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile=/etc/munge/munge.key --force
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
        log "created /etc/munge/munge.key"
    fi
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge "$MUNGE_RUN"
    chmod 0700 /etc/munge
    chmod 0400 /etc/munge/munge.key
    chmod 0755 "$MUNGE_RUN"
    runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID"
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && { log "munged up"; return; }
        sleep 0.2
    done
    die "munged did not answer (see /var/log/munge/munged.log)"
}

wait_idle() {
    local host state deadline
    host="$(short_host)"
    deadline=$(( $(date +%s) + WAIT_S ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        state="$(sinfo -h -N -n "$host" -o %T 2>/dev/null | head -n1 || true)"
        case "$state" in
            idle|mixed|allocated) log "node $host is $state"; sinfo; return 0 ;;
            down*|drain*|unknown*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    echo "--- slurmctld.log" >&2; tail -n 20 "$BASE/log/slurmctld.log" >&2 || true
    echo "--- slurmd.log" >&2; tail -n 20 "$BASE/log/slurmd.log" >&2 || true
    die "node $host not idle after ${WAIT_S}s (state: '${state:-no answer}')"
}

cmd_up() {
    need_root
    need_binaries
    write_conf
    start_munge
    if pid_alive "$CTLD_PID"; then
        log "slurmctld already running (pid $(cat "$CTLD_PID")); reconfiguring"
        scontrol reconfigure
    else
        # -c: a fresh cluster (no jobs left over from a previous 'up').
        slurmctld -c
    fi
    pid_alive "$SLURMD_PID" || slurmd
    wait_idle
}

stop_pid() {
    local name="$1" file="$2" pid
    if ! pid_alive "$file"; then
        log "$name not running"
        rm -f "$file"
        return
    fi
    pid="$(cat "$file")"
    kill "$pid"
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { log "stopped $name (pid $pid)"; rm -f "$file"; return; }
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$file"
    log "killed $name (pid $pid)"
}

cmd_down() {
    need_root
    stop_pid slurmd "$SLURMD_PID"
    stop_pid slurmctld "$CTLD_PID"
    stop_pid munged "$MUNGE_PID"
}

cmd_status() {
    local rc=0
    for pair in "munged:$MUNGE_PID" "slurmctld:$CTLD_PID" "slurmd:$SLURMD_PID"; do
        if pid_alive "${pair#*:}"; then
            echo "${pair%%:*}: running (pid $(cat "${pair#*:}"))"
        else
            echo "${pair%%:*}: stopped"; rc=1
        fi
    done
    if command -v sinfo >/dev/null 2>&1 && timeout 5 sinfo >/dev/null 2>&1; then
        sinfo
        squeue
    else
        echo "sinfo: no answer"; rc=1
    fi
    return "$rc"
}

case "${1:-}" in
    install) cmd_install ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
