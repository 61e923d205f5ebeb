#!/usr/bin/env bash
# Stop the instance started by start-rgw.sh in RGW_DIR and delete RGW_DIR.
#   1. SIGTERM radosgw (and any ceph/radosgw-admin CLI of this instance) and wait: radosgw
#      still needs mon+osd to unwatch its control objects, otherwise it hangs until SIGKILL;
#   2. SIGTERM osd + mon together (osd_fast_shutdown_notify_mon=false in ceph.conf, so the
#      OSD does not wait for the mon's ack).
# Anything still alive after 10 s gets SIGKILL. Processes are found by the pid files and by
# scanning /proc for processes started with "-c $RGW_DIR/ceph.conf" (so only this instance's
# daemons are touched, even with several instances running). Then RGW_DIR is deleted
# (memstore: object data lives only in the OSD's RAM). KEEP=1 keeps the directory and logs.
# Idempotent: exits 0 if there is nothing to stop.
set -uo pipefail
D=${RGW_DIR:-${TMPDIR:-/tmp}/ckpt-rgw}
case "$D" in /*) ;; *) D="$PWD/$D" ;; esac
D=${D%/}
if [ -z "$D" ] || [ ! -d "$D" ]; then echo "stop-rgw.sh: nothing at ${D:-/}"; exit 0; fi
CONF="$D/ceph.conf"

alive() {  # running and not a zombie (zombies linger where PID 1 does not reap, e.g. docker without --init)
  local st
  { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
  st=${st##*) }
  [ "${st%% *}" != Z ]
}

# pids of processes of this instance: kind is "client" (radosgw, CLIs) or "server" (mon, osd)
instance_pids() {
  local kind=$1 p f exe a
  local -a args
  local -A seen=()
  if [ "$kind" = client ]; then set -- "$D/run/rgw.pid"; else set -- "$D"/run/osd.*.pid "$D/run/mon.a.pid"; fi
  for f in "$@"; do
    [ -f "$f" ] || continue
    { read -r p <"$f"; } 2>/dev/null || continue
    [[ $p =~ ^[0-9]+$ ]] && alive "$p" && seen[$p]=1
  done
  for f in /proc/[0-9]*/cmdline; do   # bash builtins only: no fork per process
    p=${f#/proc/}; p=${p%/cmdline}
    [ "$p" = $$ ] && continue
    { mapfile -d '' -t args <"$f"; } 2>/dev/null || continue
    for a in "${args[@]:1}"; do
      [ "$a" = "$CONF" ] || continue
      alive "$p" || break
      exe=${args[0]##*/}
      case "$exe" in
        ceph-mon|ceph-osd) [ "$kind" = server ] && seen[$p]=1 ;;
        *) [ "$kind" = client ] && seen[$p]=1 ;;
      esac
      break
    done
  done
  echo "${!seen[@]}"
}

stopped=()
terminate() {  # terminate <pid>... : TERM all, wait up to 10 s, KILL leftovers
  local pids=("$@") p i alive
  [ ${#pids[@]} -gt 0 ] || return 0
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null && stopped+=("$p"); done
  for i in $(seq 1 200); do
    alive=0
    for p in "${pids[@]}"; do alive "$p" && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.05
  done
  for p in "${pids[@]}"; do
    if alive "$p"; then echo "stop-rgw.sh: SIGKILL $p" >&2; kill -KILL "$p" 2>/dev/null; fi
  done
  for i in $(seq 1 40); do   # reap: wait until the kernel has really removed them
    alive=0
    for p in "${pids[@]}"; do alive "$p" && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.05
  done
}

# shellcheck disable=SC2046
terminate $(instance_pids client)
# shellcheck disable=SC2046
terminate $(instance_pids server)
# a daemon (re)spawned in between (e.g. start-rgw.sh still running) gets another round
left="$(instance_pids client) $(instance_pids server)"
# shellcheck disable=SC2086
[ -n "${left// /}" ] && terminate $left

if [ "${KEEP:-0}" = 1 ]; then
  echo "stopped: ${stopped[*]:-} (kept $D)"
elif [ -f "$D/.ckpt-rgw" ]; then
  rm -rf -- "$D"
  echo "stopped: ${stopped[*]:-}"
else
  echo "stopped: ${stopped[*]:-} (not deleting $D: no .ckpt-rgw marker)" >&2
fi
