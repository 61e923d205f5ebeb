#!/usr/bin/env bash
# Throwaway single-node Ceph (1 mon, 1 memstore OSD, no mgr) + RADOS Gateway (S3) on loopback,
# for tests. Debian 12 packages: radosgw ceph-mon ceph-osd ceph-common (Ceph 16.2 "pacific").
#
# Usage: scripts/rgw/start-rgw.sh     Stop (and delete RGW_DIR) with scripts/rgw/stop-rgw.sh.
# Env:   RGW_DIR        instance directory (must not exist yet)   default ${TMPDIR:-/tmp}/ckpt-rgw
#        RGW_PORT       S3 HTTP port on 127.0.0.1                default 7480
#        MON_PORT       monitor msgr v1 port; msgr v2 uses +1    default 6789
#        S3_ACCESS_KEY / S3_SECRET_KEY   credentials of the S3 user "test"
#        RGW_START_TIMEOUT  seconds before giving up             default 60
#        KEEP=1         on failure keep the (stopped) instance directory and logs
# Prints "RGW_READY http://127.0.0.1:$RGW_PORT" on stdout once S3 requests are served (progress
# goes to stderr). Several instances can run at once with distinct RGW_DIR and ports: every
# path (conf, pid files, sockets, logs, data) lives under RGW_DIR and every daemon is started
# with "-c $RGW_DIR/ceph.conf", which stop-rgw.sh uses to find stragglers.
# On failure, log tails are printed, everything started is stopped and RGW_DIR removed.
set -eEuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
D=${RGW_DIR:-${TMPDIR:-/tmp}/ckpt-rgw}
RGW_PORT=${RGW_PORT:-7480}
MON_PORT=${MON_PORT:-6789}
MON2_PORT=$((MON_PORT + 1))
AK=${S3_ACCESS_KEY:-TESTKEY}
SK=${S3_SECRET_KEY:-TESTSECRET}
TIMEOUT=${RGW_START_TIMEOUT:-60}
T0=${EPOCHREALTIME/[.,]/}
log() {
  local now=${EPOCHREALTIME/[.,]/} ms
  ms=$(((now - T0) / 1000))
  printf '[%d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*" >&2
}
elapsed_ok() { (( (${EPOCHREALTIME/[.,]/} - T0) < TIMEOUT * 1000000 )); }

case "$D" in /*) ;; *) D="$PWD/$D" ;; esac
if [ "$D" = / ] || [ -e "$D" ]; then
  echo "start-rgw.sh: $D exists; run stop-rgw.sh first (it deletes it) or pick another RGW_DIR" >&2
  exit 1
fi
for bin in ceph-mon ceph-osd radosgw radosgw-admin monmaptool osdmaptool ceph-authtool; do
  command -v "$bin" >/dev/null || { echo "start-rgw.sh: $bin not found (apt-get install radosgw ceph-mon ceph-osd ceph-common)" >&2; exit 1; }
done
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$RGW_PORT" "$MON_PORT" "$MON2_PORT"; do
  if port_busy "$port"; then echo "start-rgw.sh: port $port on 127.0.0.1 already in use" >&2; exit 1; fi
done

mkdir -p "$D"/{run,log,mon.a,osd.0,rgw,crash}
: >"$D/.ckpt-rgw"   # marker: stop-rgw.sh only deletes directories carrying it

fail() {  # fail <line> <what>: print log tails, stop what was started, delete RGW_DIR, exit 1
  trap - ERR INT TERM
  echo "start-rgw.sh: failed at line $1: $2 (log tails follow; KEEP=1 keeps $D)" >&2
  for f in "$D"/log/*.log; do
    [ -s "$f" ] || continue
    echo "---- tail $f" >&2
    tail -n 15 "$f" >&2 || true
  done
  RGW_DIR="$D" bash "$HERE/stop-rgw.sh" >&2 || true
  exit 1
}
trap 'fail $LINENO "$BASH_COMMAND (exit $?)"' ERR
trap 'fail $LINENO "interrupted"' INT TERM
die() { fail "${BASH_LINENO[0]}" "$*"; }

CONF="$D/ceph.conf"
FSID=$(cat /proc/sys/kernel/random/uuid)
LIB=
for d in /usr/lib/*-linux-gnu /usr/lib64 /usr/lib; do   # where ceph's plugins live (multiarch)
  if [ -d "$d/ceph/erasure-code" ]; then LIB=$d; break; fi
done
[ -n "$LIB" ] || die "ceph plugin dir (…/ceph/erasure-code) not found"

cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON2_PORT,v1:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = $D/run
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
keyring = $D/keyring
crash dir = $D/crash
plugin dir = $LIB/ceph
erasure code dir = $LIB/ceph/erasure-code
osd class dir = $LIB/rados-classes
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
mon warn on insecure global id reclaim allowed = false

[mon]
mon data = $D/mon.\$id
mon cluster log file = $D/log/cluster.log
# default 1 s: every osdmap change (pool create etc.) waits this long; RGW makes ~14 of them
paxos propose interval = 0.05

[osd]
osd data = $D/osd.\$id
osd objectstore = memstore
memstore device bytes = 10737418240
osd op num shards = 1
osd op num threads per shard = 2
# throwaway cluster: on SIGTERM don't wait for the mon to acknowledge 'osd down'
osd fast shutdown notify mon = false

[client]
log file = $D/log/\$name.log
admin socket = $D/run/\$name.\$pid.asok

[client.rgw]
# radosgw forces ms_mon_client_mode=secure by default; auth 'none' only supports crc
ms mon client mode = crc secure
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $D/rgw
rgw thread pool size = 32
log file = $D/log/rgw.log
admin socket = $D/run/rgw.asok
pid file = $D/run/rgw.pid
EOF
export CEPH_CONF="$CONF"
C=(-c "$CONF")
# daemons must not hold the caller's stdout/stderr (a pipe) open after this script exits
quiet() { "$@" </dev/null >>"$D/log/stdio.log" 2>&1; }

# --- monitor
monmaptool --create --clobber --fsid "$FSID" \
  --addv a "[v2:127.0.0.1:$MON2_PORT,v1:127.0.0.1:$MON_PORT]" "$D/monmap" >/dev/null
ceph-authtool --create-keyring --gen-key -n mon. --cap mon 'allow *' "$D/keyring" >/dev/null
# The initial osdmap already holds osd.0, so no "ceph osd new" round trip (python CLI + a
# paxos commit, ~0.5 s) is needed: the OSD boots straight into it.
osdmaptool --createsimple 1 --clobber "$D/osdmap" >>"$D/log/cli.log" 2>&1
quiet ceph-mon "${C[@]}" --mkfs -i a --monmap "$D/monmap" --osdmap "$D/osdmap" --keyring "$D/keyring"
quiet ceph-mon "${C[@]}" -i a
log "mon started"

# --- OSD (memstore: object data lives in the OSD's RAM)
OSD_ID=0
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
quiet ceph-osd "${C[@]}" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID"
quiet ceph-osd "${C[@]}" -i "$OSD_ID"
log "osd.$OSD_ID started"

# --- RADOS Gateway. No need to wait for the OSD to be up first: radosgw blocks on its pools.
quiet radosgw "${C[@]}" -n client.rgw
log "radosgw started"
http_ok() {  # an HTTP status line from the S3 port
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$RGW_PORT" || return 1
  printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  IFS= read -r -t 5 line <&3 || line=
  exec 3<&- 3>&-
  [[ $line == HTTP/* ]]
}
rgw_running() {  # the pid file first names the pre-fork parent, then the daemon: allow a gap
  local p=
  { read -r p <"$D/run/rgw.pid"; } 2>/dev/null || return 0
  [ -z "$p" ] || kill -0 "$p" 2>/dev/null
}
dead=0
until http_ok 2>/dev/null; do
  elapsed_ok || die "radosgw not answering on 127.0.0.1:$RGW_PORT after ${TIMEOUT}s"
  if rgw_running; then dead=0; else dead=$((dead + 1)); fi
  [ $dead -lt 40 ] || die "radosgw exited"
  sleep 0.05
done
log "rgw answering on 127.0.0.1:$RGW_PORT"

timeout 30 radosgw-admin "${C[@]}" user create --uid=test --display-name=test \
  --access-key="$AK" --secret="$SK" >"$D/user.json" 2>>"$D/log/cli.log"
log "user created (access key $AK)"
trap - ERR INT TERM
echo "RGW_READY http://127.0.0.1:$RGW_PORT"
