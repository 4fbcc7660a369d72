#!/usr/bin/env bash
# Runs a command and starts it again whenever it exits, until this script is told to stop
# (SIGTERM or SIGINT, passed on to the command as SIGTERM).
#
#   scripts/supervise.sh COMMAND [ARGS...]
#
# For the receivers app under real Spin (`./scripts/up.sh --spin`): Spin's Redis trigger exits
# when its connection drops ("disconnected from ...") or when Redis does not answer at start, and
# `spin up` with it; started again, it subscribes once Redis is back. The wait between starts
# doubles from 1 s up to SUPERVISE_MAX_DELAY seconds (default 8), and is 1 s again after a run
# that lasted a minute, so a Redis that is away for long is polled, not hammered.
set -uo pipefail
(($#)) || { echo "usage: scripts/supervise.sh COMMAND [ARGS...]" >&2; exit 2; }
max=${SUPERVISE_MAX_DELAY:-8}
delay=1
child=
stopping=false

stop() {
  stopping=true
  if [[ -n $child ]]; then kill -TERM "$child" 2>/dev/null; fi
}
trap stop TERM INT

# Waits for pid $1 to exit and sets $status; a trapped signal interrupts `wait`, so wait again.
reap() {
  while :; do
    wait "$1"
    status=$?
    kill -0 "$1" 2>/dev/null || return 0
  done
}

while :; do
  started=$SECONDS
  "$@" &
  child=$!
  reap "$child"
  child=
  $stopping && exit "$status"
  if ((SECONDS - started >= 60)); then delay=1; fi
  echo "supervise: \`$*\` exited with status $status; starting it again in ${delay}s" >&2
  sleep "$delay" &
  child=$!
  reap "$child"
  child=
  $stopping && exit 0
  delay=$((delay * 2 > max ? max : delay * 2))
done
