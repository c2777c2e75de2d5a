#!/usr/bin/env bash
# A real single-node SLURM cluster (Debian's slurmctld, slurmd and munge) for the
# dask-jobqueue tests: `.ci/slurm.sh start` installs, configures from this
# machine's short hostname and starts the daemons; `.ci/slurm.sh stop` stops
# the daemons it started, by their pid files.
set -euo pipefail
state=/run/appliance-slurm
conf=/etc/slurm/slurm.conf

start() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
    fi
    mkdir -p "$state" /run/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/slurm
    chown munge:munge /etc/munge/munge.key /run/munge
    chmod 400 /etc/munge/munge.key
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        su -s /bin/sh munge -c "munged --pid-file=/run/munge/munged.pid"
        cp /run/munge/munged.pid "$state/munged.pid" 2>/dev/null || true
    fi
    local host cpus memory
    host=$(hostname -s)
    cpus=$(nproc)
    memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
    cat > "$conf" <<EOF
ClusterName=appliance
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 1 60); do
        if sinfo -h -o %T 2>/dev/null | grep -q idle; then
            echo "SLURM: node $host idle ($cpus CPUs, ${memory} MB)"
            return 0
        fi
        sleep 1
    done
    echo "error: SLURM did not come up; see /var/log/slurm/" >&2
    return 1
}

stop() {
    local name
    for name in slurmd slurmctld munged; do
        if [[ -f "$state/$name.pid" ]]; then
            kill "$(cat "$state/$name.pid")" 2>/dev/null || true
            rm -f "$state/$name.pid"
        fi
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
