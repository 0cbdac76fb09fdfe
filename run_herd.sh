#!/usr/bin/env bash
# run_herd.sh: start, stop and inspect a proxy herd on this machine.
# Run `./run_herd.sh help` for the commands and the environment it reads.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: ./run_herd.sh COMMAND [NAME...]

Commands:
  start [NAME...]    build the release binaries if needed, start the herd's
                     servers (all, or the ones named) in the background and
                     wait until each answers; print the herd's addresses.
                     Of a herd file whose servers are on several machines it
                     starts those whose host is an address of this machine,
                     and says which it skipped
  stop [NAME...]     stop the servers named, or everything this script
                     started (every server and places-stub)
  restart [NAME...]  stop, then start (all if no NAME)
  status             show each server (running with its PID, or stopped)
                     and places-stub
  watch              a live view of the running herd, from the servers'
                     metrics: servers and links up or down, clients, updates
                     per second, what each link holds waiting, resyncs;
                     q or Ctrl-C quits
  help               show this text

Logs go to logs/ (NAME.log is the server's log, rotated past 64 MiB with
four old ones kept; NAME.out its stdout and stderr) and PID files to run/,
both in the script's folder.

Links between the servers it starts are authenticated: start makes a
random herd secret, run/herd-secret (readable by you alone), and every
server must prove it before a neighbour takes its AT lines, so nobody
else who reaches a peer port can forge a location. Set HERD_AUTH=off when
some servers of the herd are started another way (a grader's own), which
could not prove it.

A herd over several machines: give every machine the same herd file
(HERD_CONFIG), with each server's host one of its machine's addresses, and
the same HERD_SECRET, then run start on each.

Environment:
  GOOGLE_PLACES_API_KEY  the Places key. If unset or empty, start runs
                         places-stub (MADE-UP places) and points the herd at it
  STUB_PORT              places-stub's port (default 8099)
  HERD_CONFIG            a herd file (JSON) to run instead of the built-in
                         five servers on 127.0.0.1:12000-12004
  PLACES_API             passed through to the servers (legacy or new;
                         with the stub, picks which of its APIs they use)
  HERD_RUN_DIR           folder for logs/ and run/ (default: the script's)
  PROXY_HERD_BIN_DIR     use proxy-herd and places-stub from this folder
                         instead of building target/release
  HERD_AUTH              on (default): links prove run/herd-secret, or
                         HERD_SECRET if set; off: links are open to anyone
  HERD_METRICS           on (default): each server serves Prometheus metrics
                         at http://HOST:PORT+HERD_METRICS_OFFSET/metrics; off
  HERD_METRICS_OFFSET    metrics port minus client port (default 7000, so
                         19000-19004 for the built-in herd)
  HERD_LOG_MAX_BYTES     rotate each log past this size (default 64M)
  HERD_LOG_KEEP          rotated logs kept per server (default 4)
EOF
}

die() {
    echo "run_herd.sh: $*" >&2
    exit 1
}

# Paths given by the caller are relative to the caller's folder; make them
# absolute before moving to the script's own folder.
absolute() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$PWD/$1" ;;
    esac
}

HERD_CONFIG=${HERD_CONFIG:-}
[[ -n "$HERD_CONFIG" ]] && HERD_CONFIG=$(absolute "$HERD_CONFIG")
BIN_DIR_GIVEN=${PROXY_HERD_BIN_DIR:-}
[[ -n "$BIN_DIR_GIVEN" ]] && BIN_DIR_GIVEN=$(absolute "$BIN_DIR_GIVEN")
RUN_DIR=${HERD_RUN_DIR:-}
[[ -n "$RUN_DIR" ]] && RUN_DIR=$(absolute "$RUN_DIR")

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$SCRIPT_DIR"

RUN_DIR=${RUN_DIR:-$SCRIPT_DIR}
LOG_DIR=$RUN_DIR/logs
PID_DIR=$RUN_DIR/run
if [[ -n "$BIN_DIR_GIVEN" ]]; then
    BIN_DIR=$BIN_DIR_GIVEN
else
    BIN_DIR=$(absolute "${CARGO_TARGET_DIR:-target}")/release
fi
HERD_BIN=$BIN_DIR/proxy-herd
STUB_BIN=$BIN_DIR/places-stub
STUB=places-stub
STUB_PORT=${STUB_PORT:-8099}
# What the servers get as a key when they use places-stub: the herd does
# not call Places without a key, and the stub accepts any non-empty one.
STUB_KEY=offline-places-stub
HERD_AUTH=${HERD_AUTH:-on}
case "$HERD_AUTH" in
    on | off) ;;
    *) die "HERD_AUTH must be on or off, not '$HERD_AUTH'" ;;
esac
HERD_METRICS=${HERD_METRICS:-on}
case "$HERD_METRICS" in
    on | off) ;;
    *) die "HERD_METRICS must be on or off, not '$HERD_METRICS'" ;;
esac
HERD_METRICS_OFFSET=${HERD_METRICS_OFFSET:-7000}
[[ "$HERD_METRICS_OFFSET" =~ ^-?[0-9]+$ ]] ||
    die "HERD_METRICS_OFFSET must be a whole number, not '$HERD_METRICS_OFFSET'"
HERD_LOG_MAX_BYTES=${HERD_LOG_MAX_BYTES:-64M}
HERD_LOG_KEEP=${HERD_LOG_KEEP:-4}
START_TIMEOUT=15 # seconds for a server to answer on its client port
STOP_TIMEOUT=5   # seconds for a server to exit after SIGTERM

# Where logs/ or run/ is, whole, so that it reads right from any folder.
shown() {
    printf '%s/\n' "$RUN_DIR/$1"
}

build() {
    if [[ -n "$BIN_DIR_GIVEN" ]]; then
        [[ -x "$HERD_BIN" && -x "$STUB_BIN" ]] ||
            die "PROXY_HERD_BIN_DIR=$BIN_DIR has no proxy-herd and places-stub"
        return
    fi
    command -v cargo >/dev/null ||
        die "cargo not found: install Rust (https://rustup.rs) to build the herd"
    echo "Building the release binaries (cargo build --release --bins)..."
    cargo build --release --bins --quiet || die "the build failed"
}

# The herd file the servers in RUN_DIR were started with ("" for the
# built-in herd), so that status and stop see the same herd as start did.
recorded_config() {
    if [[ -f "$PID_DIR/herd-config" ]]; then
        cat "$PID_DIR/herd-config"
    else
        printf '%s\n' "$HERD_CONFIG"
    fi
}

# Fills NAMES, HOSTS, PORTS, PEERS and PLACES from `proxy-herd
# --list-herd`. PLACES[i] is "here" when server i's host is an address of
# this machine, "elsewhere" when the herd file puts it on another one.
NAMES=() HOSTS=() PORTS=() PEERS=() PLACES=()
load_herd() {
    local config=$1 listing name host port peer place
    local args=(--list-herd)
    [[ -n "$config" ]] && args+=(--config "$config")
    [[ -x "$HERD_BIN" ]] || die "$HERD_BIN is not built yet: run ./run_herd.sh start"
    listing=$("$HERD_BIN" "${args[@]}") || die "cannot read the herd${config:+ from $config}"
    NAMES=() HOSTS=() PORTS=() PEERS=() PLACES=()
    while read -r name host port peer place; do
        NAMES+=("$name") HOSTS+=("$host") PORTS+=("$port") PEERS+=("$peer") PLACES+=("$place")
    done <<<"$listing"
}

# "Name (host), Name (host)" for the servers of the herd whose hosts are
# other machines'; empty when the whole herd is here.
elsewhere_list() {
    local i out=()
    for i in "${!NAMES[@]}"; do
        [[ "${PLACES[$i]}" == here ]] || out+=("${NAMES[$i]} (${HOSTS[$i]})")
    done
    local IFS=,
    printf '%s' "${out[*]}" | sed 's/,/, /g'
}

# The index of server NAME in NAMES, or a clear error.
index_of() {
    local i
    for i in "${!NAMES[@]}"; do
        if [[ "${NAMES[$i]}" == "$1" ]]; then
            echo "$i"
            return
        fi
    done
    echo "run_herd.sh: no server named '$1' in the herd (it has: ${NAMES[*]})" >&2
    exit 2
}

# The command line of a process, arguments separated by spaces.
cmdline_of() {
    if [[ -r /proc/$1/cmdline ]]; then
        tr '\0' ' ' <"/proc/$1/cmdline" | sed 's/ $//'
    else
        ps -o args= -p "$1" 2>/dev/null || true
    fi
}

# The PID in run/WHAT.pid if that process is still the one this script
# started (same command line as recorded), so a reused PID is never taken
# for ours. A stale PID file is removed.
pid_of() {
    local what=$1 pid
    [[ -f "$PID_DIR/$what.pid" ]] || return 1
    pid=$(<"$PID_DIR/$what.pid")
    if [[ "$pid" =~ ^[0-9]+$ && -f "$PID_DIR/$what.cmdline" ]] &&
        [[ "$(cmdline_of "$pid")" == "$(<"$PID_DIR/$what.cmdline")" ]]; then
        echo "$pid"
        return 0
    fi
    rm -f "$PID_DIR/$what.pid" "$PID_DIR/$what.cmdline"
    return 1
}

# Starts a program in the background with its output in logs/WHAT.out and
# records its PID and command line.
launch() {
    local what=$1 pid
    shift
    mkdir -p "$LOG_DIR" "$PID_DIR"
    "$@" </dev/null >"$LOG_DIR/$what.out" 2>&1 &
    pid=$!
    echo "$pid" >"$PID_DIR/$what.pid"
    printf '%s\n' "$*" >"$PID_DIR/$what.cmdline"
    echo "$pid"
}

# Whether something accepts connections on HOST PORT.
answers() {
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# Waits until HOST PORT answers and, if READY is given, the program has
# printed READY to its .out file. A server prints its "serving clients"
# line only once both its ports are bound: its client port alone answers
# a moment before a taken peer port can still make it exit. Fails at once
# if process PID is gone.
wait_for() {
    local what=$1 pid=$2 host=$3 port=$4 ready=${5:-} tries=$((START_TIMEOUT * 20))
    until [[ -z "$ready" ]] || grep -qF "$ready" "$LOG_DIR/$what.out" 2>/dev/null; do
        check_alive "$what" "$pid" "$host" "$port" "$ready" || return 1
    done
    until answers "$host" "$port" && kill -0 "$pid" 2>/dev/null; do
        check_alive "$what" "$pid" "$host" "$port" "$ready" || return 1
    done
}

# One step of wait_for: fails, saying so, if PID is gone or time is up;
# otherwise waits a moment.
check_alive() {
    local what=$1 pid=$2 host=$3 port=$4 ready=$5
    if ! kill -0 "$pid" 2>/dev/null || ((tries-- <= 0)); then
        {
            echo "run_herd.sh: $what did not come up on $host:$port; see $(shown logs)$what.out${ready:+ and $(shown logs)$what.log}"
            tail -n 5 "$LOG_DIR/$what.out" 2>/dev/null | sed 's/^/  | /'
        } >&2
        return 1
    fi
    sleep 0.05
}

# SIGTERM, then wait (bounded) for the process to exit; SIGKILL if not.
# Says so when WHAT was not running, unless QUIET_IF_STOPPED is set
# (restart, where that is no news).
QUIET_IF_STOPPED=0
stop_one() {
    local what=$1 pid tries=$((STOP_TIMEOUT * 20))
    if ! pid=$(pid_of "$what"); then
        ((QUIET_IF_STOPPED)) || echo "$what is not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    while pid_of "$what" >/dev/null; do
        if ((tries-- <= 0)); then
            echo "run_herd.sh: $what (PID $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.05
    done
    rm -f "$PID_DIR/$what.pid" "$PID_DIR/$what.cmdline"
    echo "Stopped $what (PID $pid)"
}

# The stub's URL for the API the servers will speak (PLACES_API).
stub_url() {
    local cmd path=/maps/api/place/nearbysearch/json
    cmd=$(<"$PID_DIR/$STUB.cmdline")
    [[ "${PLACES_API:-legacy}" == [Nn][Ee][Ww] ]] && path=/v1/places:searchNearby
    echo "http://127.0.0.1:${cmd##* --port }$path"
}

# Starts places-stub unless it is running; sets PLACES_URL to it.
ensure_stub() {
    local pid started_stub=0
    if ! pid=$(pid_of "$STUB"); then
        started_stub=1
        if answers 127.0.0.1 "$STUB_PORT"; then
            die "cannot start places-stub: port $STUB_PORT is already in use (set STUB_PORT to a free port)"
        fi
        pid=$(launch "$STUB" "$STUB_BIN" --host 127.0.0.1 --port "$STUB_PORT")
        wait_for "$STUB" "$pid" 127.0.0.1 "$STUB_PORT" ||
            die "places-stub could not start (is port $STUB_PORT taken? set STUB_PORT)"
    fi
    PLACES_URL=$(stub_url)
    if ((started_stub)); then
        echo "No GOOGLE_PLACES_API_KEY: WHATSAT answers come from places-stub at $PLACES_URL (MADE-UP places, PID $pid)"
    fi
}

# Sets SECRET_ARGS to the flags that make a server prove the herd secret,
# and makes
# run/herd-secret if it is needed and missing: 32 random bytes in hex,
# created readable by the owner alone. HERD_SECRET, if set, is used
# instead (the servers read it from the environment). Servers started
# later into a running herd get the same secret, and its mode too: a herd
# started with HERD_AUTH=off stays open until it is stopped.
SECRET_ARGS=()
secret_args() {
    local recorded=$HERD_AUTH
    SECRET_ARGS=()
    if [[ -f "$PID_DIR/herd-auth" ]] && [[ -n "$(running_servers)" ]]; then
        recorded=$(<"$PID_DIR/herd-auth")
        [[ "$recorded" == "$HERD_AUTH" ]] ||
            die "a herd with HERD_AUTH=$recorded is running here: stop it first, or start with HERD_AUTH=$recorded"
    fi
    printf '%s\n' "$HERD_AUTH" >"$PID_DIR/herd-auth"
    if [[ "$HERD_AUTH" == off ]]; then
        # The servers would read a HERD_SECRET left in the environment.
        unset HERD_SECRET
        return 0
    fi
    [[ -z "${HERD_SECRET:-}" ]] || return 0
    if [[ ! -s "$PID_DIR/herd-secret" ]]; then
        (
            umask 077
            od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$PID_DIR/herd-secret.new"
        ) || die "cannot make a herd secret in $PID_DIR"
        mv "$PID_DIR/herd-secret.new" "$PID_DIR/herd-secret"
    fi
    SECRET_ARGS=(--herd-secret-file "$PID_DIR/herd-secret")
}

# "the herd from FILE", or "the built-in herd" for an empty FILE.
herd_named() {
    if [[ -n "$1" ]]; then
        printf 'the herd from %s\n' "$1"
    else
        printf 'the built-in herd\n'
    fi
}

# Fails unless every NAME is a server of the herd (HERD_CONFIG, or the
# one already running here). Checked before building when a binary is
# there to ask, so a misspelt name costs no build.
check_names() {
    local config=$1 name
    shift
    (($# > 0)) && [[ -x "$HERD_BIN" ]] || return 0
    load_herd "$config"
    for name in "$@"; do index_of "$name" >/dev/null; done
}

cmd_start() {
    local config i pid name entry failed=0 wanted=()
    check_names "$(recorded_config)" "$@"
    build
    config=$HERD_CONFIG
    if [[ -f "$PID_DIR/herd-config" ]] && [[ -n "$(running_servers)" ]]; then
        if [[ -n "$config" && "$config" != "$(<"$PID_DIR/herd-config")" ]]; then
            die "$(herd_named "$(<"$PID_DIR/herd-config")") is running here: stop it first"
        fi
        config=$(<"$PID_DIR/herd-config")
    fi
    if [[ -n "$config" && ! -f "$config" ]]; then
        die "HERD_CONFIG: no such file: $config"
    fi
    load_herd "$config"
    mkdir -p "$LOG_DIR" "$PID_DIR"
    printf '%s\n' "$config" >"$PID_DIR/herd-config"
    # A herd over several machines: each machine starts the servers whose
    # hosts are its own, and the herd file is the same everywhere.
    local elsewhere
    elsewhere=$(elsewhere_list)
    if (($# == 0)); then
        for i in "${!NAMES[@]}"; do
            [[ "${PLACES[$i]}" == here ]] && wanted+=("$i")
        done
        ((${#wanted[@]} > 0)) ||
            die "no server of $(herd_named "$config") has a host of this machine: start it on the machines its hosts name ($elsewhere)"
    else
        for name in "$@"; do
            i=$(index_of "$name")
            [[ "${PLACES[$i]}" == here ]] ||
                die "$name's host ${HOSTS[$i]} is not an address of this machine: start $name there"
            wanted+=("$i")
        done
    fi
    if [[ -n "$elsewhere" && "$HERD_AUTH" == on && -z "${HERD_SECRET:-}" ]]; then
        die "$(herd_named "$config") spans machines ($elsewhere run elsewhere), so every machine must prove the same secret: set HERD_SECRET to one value on all of them, e.g. export HERD_SECRET=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n'), or set HERD_AUTH=off"
    fi
    if [[ -n "$elsewhere" && $# -eq 0 ]]; then
        echo "Starting the servers whose hosts are this machine's; skipped, as their hosts are other machines': $elsewhere"
    fi

    local config_args=()
    [[ -n "$config" ]] && config_args=(--config "$config")
    secret_args
    config_args+=("${SECRET_ARGS[@]}" --log-max-bytes "$HERD_LOG_MAX_BYTES" --log-keep "$HERD_LOG_KEEP")
    if [[ -z "${GOOGLE_PLACES_API_KEY:-}" ]]; then
        ensure_stub
        export PLACES_URL GOOGLE_PLACES_API_KEY=$STUB_KEY
    fi

    metrics_setting
    local started=()
    for i in "${wanted[@]}"; do
        name=${NAMES[$i]}
        if pid=$(pid_of "$name"); then
            echo "$name is already running (PID $pid); left alone"
            continue
        fi
        if answers "${HOSTS[$i]}" "${PORTS[$i]}"; then
            echo "run_herd.sh: cannot start $name: ${HOSTS[$i]}:${PORTS[$i]} is already in use by another program" >&2
            failed=1
            continue
        fi
        local metrics_args=()
        if [[ "$METRICS" != off ]]; then
            metrics_args=(--metrics-addr "${HOSTS[$i]}:$(metrics_port "$i")")
        fi
        pid=$(launch "$name" "$HERD_BIN" "$name" "${config_args[@]}" "${metrics_args[@]}" --log-dir "$LOG_DIR")
        started+=("$i:$pid")
    done
    for entry in "${started[@]}"; do
        i=${entry%%:*} pid=${entry#*:}
        if wait_for "${NAMES[$i]}" "$pid" "${HOSTS[$i]}" "${PORTS[$i]}" "serving clients"; then
            echo "Started ${NAMES[$i]} (PID $pid)"
        else
            stop_one "${NAMES[$i]}" >/dev/null
            failed=1
        fi
    done
    if ((failed)); then
        echo "run_herd.sh: not every server came up; ./run_herd.sh status shows which" >&2
        exit 1
    fi
    # Starting some servers of a running herd says no more than that.
    (($# == 0)) || return 0

    echo
    if [[ "$HERD_AUTH" == on && -n "${HERD_SECRET:-}" ]]; then
        echo "Links prove the herd secret in HERD_SECRET (HERD_AUTH=off for open links)."
    elif [[ "$HERD_AUTH" == on ]]; then
        echo "Links prove the herd secret in $(shown run)herd-secret (HERD_AUTH=off for open links)."
    else
        echo "Links are open (HERD_AUTH=off): anyone who reaches a peer port can send AT lines."
    fi
    echo "The herd (logs in $(shown logs), PIDs in $(shown run)):"
    printf '  %-10s %-20s %-20s %s\n' SERVER 'CLIENT PORT' 'PEER PORT' 'METRICS'
    for i in "${!NAMES[@]}"; do
        local shown_metrics=off
        [[ "$METRICS" == off ]] || shown_metrics="${HOSTS[$i]}:$(metrics_port "$i")"
        printf '  %-10s %-20s %-20s %s%s\n' "${NAMES[$i]}" "${HOSTS[$i]}:${PORTS[$i]}" "${HOSTS[$i]}:${PEERS[$i]}" \
            "$shown_metrics" "$([[ "${PLACES[$i]}" == here ]] || echo '  (another machine)')"
    done
    echo
    local first=${wanted[0]} last=${wanted[-1]}
    [[ "$METRICS" == off ]] || echo "Watch it live: ./run_herd.sh watch"
    cat <<EOF
Try:  printf 'IAMAT kiwi.cs.ucla.edu +34.068930-118.445127 %s\n' "\$(date +%s.%N)" | nc -N ${HOSTS[$first]} ${PORTS[$first]}
then: printf 'WHATSAT kiwi.cs.ucla.edu 10 3\n' | nc -N ${HOSTS[$last]} ${PORTS[$last]}
EOF
}

# Sets METRICS to the metrics offset the servers run with ("off" for
# none): HERD_METRICS and HERD_METRICS_OFFSET for a new herd, what the
# running herd was started with for servers added to it, so that watch
# finds them all.
METRICS=off
metrics_setting() {
    local wanted=off
    [[ "$HERD_METRICS" == off ]] || wanted=$HERD_METRICS_OFFSET
    if [[ -f "$PID_DIR/herd-metrics" ]] && [[ -n "$(running_servers)" ]]; then
        METRICS=$(<"$PID_DIR/herd-metrics")
    else
        METRICS=$wanted
        printf '%s\n' "$METRICS" >"$PID_DIR/herd-metrics"
    fi
    if [[ "$METRICS" != off ]]; then
        local i j port
        for i in "${!NAMES[@]}"; do
            port=$((PORTS[i] + METRICS))
            ((port >= 1 && port <= 65535)) ||
                die "${NAMES[$i]}'s metrics port would be $port (client port ${PORTS[$i]} + HERD_METRICS_OFFSET $METRICS): set another HERD_METRICS_OFFSET, or HERD_METRICS=off"
            for j in "${!NAMES[@]}"; do
                [[ "${HOSTS[$j]}" == "${HOSTS[$i]}" ]] || continue
                if ((port == PORTS[j] || port == PEERS[j])); then
                    die "${NAMES[$i]}'s metrics port $port (client port + HERD_METRICS_OFFSET $METRICS) is a port of ${NAMES[$j]}: set another HERD_METRICS_OFFSET, or HERD_METRICS=off"
                fi
            done
        done
    fi
}

# The metrics port of server I.
metrics_port() {
    echo $((PORTS[$1] + METRICS))
}

# Names of the servers this script started that are still running.
running_servers() {
    local file what
    for file in "$PID_DIR"/*.pid; do
        [[ -e "$file" ]] || continue
        what=$(basename "$file" .pid)
        [[ "$what" == "$STUB" ]] && continue
        pid_of "$what" >/dev/null && echo "$what"
    done
    return 0
}

cmd_stop() {
    local name
    if (($# > 0)); then
        load_herd "$(recorded_config)"
        for name in "$@"; do index_of "$name" >/dev/null; done
        for name in "$@"; do stop_one "$name"; done
        return
    fi
    local running
    mapfile -t running < <(running_servers)
    if ((${#running[@]} == 0)) && ! pid_of "$STUB" >/dev/null; then
        echo "Nothing running"
    fi
    for name in "${running[@]}"; do stop_one "$name"; done
    pid_of "$STUB" >/dev/null && stop_one "$STUB"
    rm -f "$PID_DIR"/*.pid "$PID_DIR"/*.cmdline "$PID_DIR/herd-config" "$PID_DIR/herd-auth" \
        "$PID_DIR/herd-secret" "$PID_DIR/herd-metrics"
}

cmd_status() {
    local i pid
    load_herd "$(recorded_config)"
    for i in "${!NAMES[@]}"; do
        if pid=$(pid_of "${NAMES[$i]}"); then
            printf '%-12s running (PID %s)  clients %s:%s  peers %s:%s\n' "${NAMES[$i]}" "$pid" \
                "${HOSTS[$i]}" "${PORTS[$i]}" "${HOSTS[$i]}" "${PEERS[$i]}"
        elif [[ "${PLACES[$i]}" != here ]]; then
            printf '%-12s on another machine (%s)\n' "${NAMES[$i]}" "${HOSTS[$i]}"
        else
            printf '%-12s stopped\n' "${NAMES[$i]}"
        fi
    done
    if pid=$(pid_of "$STUB"); then
        printf '%-12s running (PID %s)  %s (MADE-UP places)\n' "$STUB" "$pid" "$(stub_url)"
    else
        printf '%-12s stopped\n' "$STUB"
    fi
}

cmd_watch() {
    local config offset
    config=$(recorded_config)
    [[ -f "$PID_DIR/herd-metrics" ]] && [[ -n "$(running_servers)" ]] ||
        die "no herd is running here: ./run_herd.sh start first"
    offset=$(<"$PID_DIR/herd-metrics")
    [[ "$offset" != off ]] ||
        die "the running herd was started with HERD_METRICS=off: restart it with metrics on to watch it"
    [[ -x "$BIN_DIR/herd-watch" ]] || die "$BIN_DIR/herd-watch is not built: run ./run_herd.sh start"
    local args=(--metrics-offset "$offset")
    [[ -n "$config" ]] && args+=(--config "$config")
    exec "$BIN_DIR/herd-watch" "${args[@]}"
}

if (($# == 0)); then
    usage >&2
    exit 2
fi

case "$1" in
    start) shift && cmd_start "$@" ;;
    stop) shift && cmd_stop "$@" ;;
    restart)
        shift
        QUIET_IF_STOPPED=1
        if (($# == 0)); then cmd_stop; else cmd_stop "$@"; fi
        cmd_start "$@"
        ;;
    status) cmd_status ;;
    watch) cmd_watch ;;
    help | -h | --help) usage ;;
    *)
        echo "run_herd.sh: unknown command '$1'" >&2
        usage >&2
        exit 2
        ;;
esac
