# Helpers for in-guest HIL test scripts (sourced; runs inside the guest, chrooted into the host root).
# Each check appends one line to $HIL_OUT/results: "PASS name (N ms)" or "FAIL name (N ms): why";
# tools/hil/run counts them. Each check's output is kept in $HIL_OUT/logs/name.log.
: "${HIL_OUT:?HIL_OUT not set — this runs inside the guest started by tools/hil/run}"
HIL_RESULTS="$HIL_OUT/results"
HIL_LOGS="$HIL_OUT/logs"
mkdir -p "$HIL_LOGS"
HIL_BG_PIDS=()

# Milliseconds from bash's own clock: forking date(1) costs ~100 ms under TCG.
_ms() { local t=${EPOCHREALTIME/./}; echo $(( t / 1000 )); }

pass() { echo "PASS $1${2:+ ($2)}" >>"$HIL_RESULTS"; echo "  ok    $1${2:+ ($2)}"; }
fail() { local n=$1; shift; echo "FAIL $n: $*" >>"$HIL_RESULTS"; echo "  FAIL  $n: $*"; }
section() { echo "== $*"; }

# check NAME CMD [ARGS...] — passes when CMD exits 0.
check() {
  local name=$1; shift
  local log="$HIL_LOGS/$name.log" t0 rc
  t0=$(_ms)
  "$@" >"$log" 2>&1
  rc=$?
  if ((rc == 0)); then
    pass "$name" "$(( $(_ms) - t0 )) ms"
  else
    fail "$name" "exit $rc after $(( $(_ms) - t0 )) ms: $(tail -n 3 "$log" | tr '\n' ' ' | cut -c1-300)"
  fi
  return $rc
}

# info NAME TEXT — a measurement or fact for the report; counted neither as passed nor failed.
info() { local n=$1; shift; echo "INFO $n: $*" >>"$HIL_RESULTS"; echo "  info  $n: $*"; }

# skip NAME WHY — recorded, but counted neither as passed nor failed.
skip() { local n=$1; shift; echo "SKIP $n: $*" >>"$HIL_RESULTS"; echo "  skip  $n: $*"; }

# wait_until SECONDS CMD [ARGS...] — re-evaluates CMD every 50 ms until it succeeds or time runs out.
# (Only for waiting on the kernel to create devices; the code under test never polls.)
wait_until() {
  local limit=$(( $(_ms) + $1 * 1000 )); shift
  until "$@"; do
    (( $(_ms) > limit )) && return 1
    sleep 0.05
  done
}

# background NAME CMD [ARGS...] — starts CMD with its output in logs/NAME.log; stopped at exit.
background() {
  local name=$1; shift
  "$@" >"$HIL_LOGS/$name.log" 2>&1 &
  HIL_BG_PIDS+=($!)
  eval "HIL_PID_$name=$!"
}

stop_background() {
  local pid
  for pid in "${HIL_BG_PIDS[@]}"; do kill -INT "$pid" 2>/dev/null; done
  for pid in "${HIL_BG_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  HIL_BG_PIDS=()
}
trap stop_background EXIT

# expect_failure CODE TEXT CMD [ARGS...] — passes when CMD exits with status CODE and its output
# (stdout and stderr) contains TEXT; prints that output for the log.
expect_failure() {
  local code=$1 text=$2 out rc; shift 2
  out=$("$@" 2>&1); rc=$?
  printf '%s\n' "$out"
  if ((rc != code)); then echo "expected exit $code, got $rc"; return 1; fi
  grep -qF -- "$text" <<<"$out" || { echo "expected output containing: $text"; return 1; }
}

# bdaddr hciN — the controller's public address.
bdaddr() { hciconfig "$1" | awk '/BD Address/ {print $3; exit}'; }
