#!/bin/sh
# misdirect adapter: headless Chromium loads the harness's client page.
#
#     misdirect run SCENARIO -- clients/chromium.sh
#
# Run it only inside a loopback-only network namespace: browsers make background requests.
#     unshare -n sh -c 'ip link set lo up && misdirect run SCENARIO -- clients/chromium.sh'
#
# Fresh profile and fresh $HOME (for the NSS database) in a temporary directory. Names are
# mapped with --host-resolver-rules; every other name fails to resolve (belt and braces
# against background requests). The harness's CA is trusted through an NSS database
# (certutil, Debian `libnss3-tools`), so expired, not yet valid or wrong-name leaves are
# still refused; without certutil it falls back to --ignore-certificate-errors-spki-list,
# which accepts those invalid leaves too. Network prediction is off (no spare preconnected
# socket in the journal); the page's empty icon keeps /favicon.ico out of it.
#
# Waiting: with python3, the browser runs under --remote-debugging-pipe and a small DevTools
# driver polls the page's title in real time until it is "misdirect: done" (so the page's
# pauses and every subresource, 421 retries included, take their real time), then reads
# #results and closes the browser. Without python3: --virtual-time-budget + --dump-dom
# (the plan's pauses then pass in virtual time, i.e. instantly).
#
# Environment: CHROMIUM (browser binary; default chromium, chromium-browser, google-chrome),
# MISDIRECT_CHROMIUM_TIMEOUT (seconds to wait for the page, default 90),
# MISDIRECT_CHROMIUM_SETTLE_MS (pause between start-up and loading the page, default 1000),
# MISDIRECT_CHROMIUM_WAIT=cdp|virtual-time (default cdp when python3 is there),
# MISDIRECT_NETLOG=FILE (write a net-log there), MISDIRECT_KEEP=1 (keep the temporary dir).
#
# Exits 0 once the browser ran, whatever it saw (judging that is the verdict's job), also
# when the page did not finish in time; non-zero only when the browser could not run.
set -u

die() { echo "chromium.sh: $*" >&2; exit 2; }

: "${MISDIRECT_BROWSER_URL:?chromium.sh: run me under misdirect run (MISDIRECT_BROWSER_URL is unset)}"
: "${MISDIRECT_HOST_RESOLVER_RULES:?chromium.sh: MISDIRECT_HOST_RESOLVER_RULES is unset}"

browser=${CHROMIUM:-}
if [ -z "$browser" ]; then
    for b in chromium chromium-browser google-chrome; do
        if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
    done
fi
[ -n "$browser" ] || die "no chromium found (install the Debian package chromium, or set CHROMIUM)"
limit=${MISDIRECT_CHROMIUM_TIMEOUT:-90}
wait_mode=${MISDIRECT_CHROMIUM_WAIT:-}
if [ -z "$wait_mode" ]; then
    if command -v python3 >/dev/null 2>&1; then wait_mode=cdp; else wait_mode=virtual-time; fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/misdirect-chromium.XXXXXX") || die "mktemp failed"
cleanup() {
    if [ "${MISDIRECT_KEEP:-0}" = 1 ]; then echo "chromium.sh: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp/home/.pki/nssdb" "$tmp/profile/Default" || die "cannot create $tmp"
# No network prediction: the loading predictor would otherwise preconnect a spare socket to
# the page's origin, an extra connection in the journal that carries no request.
printf '%s\n' '{"net":{"network_prediction_options":2}}' >"$tmp/profile/Default/Preferences"

trust=""
if [ -n "${MISDIRECT_CA:-}" ] && command -v certutil >/dev/null 2>&1; then
    certutil -N -d "sql:$tmp/home/.pki/nssdb" --empty-password >"$tmp/certutil.log" 2>&1 &&
        certutil -A -d "sql:$tmp/home/.pki/nssdb" -t "C,," -n misdirect -i "$MISDIRECT_CA" \
            >>"$tmp/certutil.log" 2>&1 ||
        { cat "$tmp/certutil.log" >&2; die "certutil could not add $MISDIRECT_CA"; }
    trust="CA $MISDIRECT_CA in an NSS database"
elif [ -n "${MISDIRECT_SPKI_LIST:-}" ]; then
    trust="leaf SPKI list (certutil missing: invalid leaves are accepted too)"
else
    die "neither MISDIRECT_CA with certutil nor MISDIRECT_SPKI_LIST to trust the harness"
fi

set -- --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --disable-quic \
    --no-first-run --no-default-browser-check --disable-background-networking \
    --disable-component-update --disable-sync --disable-extensions \
    --disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,HttpsUpgrades \
    --metrics-recording-only --password-store=basic --use-mock-keychain \
    --user-data-dir="$tmp/profile" \
    --host-resolver-rules="$MISDIRECT_HOST_RESOLVER_RULES,MAP * ~NOTFOUND"
case $trust in
    leaf*) set -- "$@" --ignore-certificate-errors-spki-list="$MISDIRECT_SPKI_LIST" ;;
esac
[ -n "${MISDIRECT_NETLOG:-}" ] && set -- "$@" --log-net-log="$MISDIRECT_NETLOG" --net-log-capture-mode=Default

echo "chromium.sh: $("$browser" --version 2>/dev/null | head -n 1)"
echo "chromium.sh: trusting the harness with the $trust"
echo "chromium.sh: $MISDIRECT_HOST_RESOLVER_RULES"
echo "chromium.sh: loading $MISDIRECT_BROWSER_URL (waiting: $wait_mode, at most ${limit}s)"

failed() {
    echo "chromium.sh: $browser failed ($1); its stderr:" >&2
    tail -n 40 "$tmp/stderr.log" >&2
    exit 1
}

if [ "$wait_mode" = cdp ]; then
    # DevTools over --remote-debugging-pipe: the browser reads commands on fd 3 and writes
    # answers on fd 4, each a JSON message ended by a NUL byte.
    HOME="$tmp/home" python3 - "$tmp" "$limit" "$MISDIRECT_BROWSER_URL" "$browser" "$@" \
        2>"$tmp/driver.log" 3>&- 4>&- <<'PYTHON'
import fcntl, json, os, select, shutil, subprocess, sys, time

tmp, limit, url, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
settle = float(os.environ.get("MISDIRECT_CHROMIUM_SETTLE_MS", "1000")) / 1000
DONE = "misdirect: done"
to_browser_r, to_browser_w = os.pipe()
from_browser_r, from_browser_w = os.pipe()

def child_fds():
    # fd 3: the browser's commands in; fd 4: its answers out. Copy both above 10 first (the
    # pipes may themselves be 3 or 4), then dup2, which leaves the copies inheritable.
    high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
    high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
    os.dup2(high_r, 3)
    os.dup2(high_w, 4)

try:
    proc = subprocess.Popen(
        argv + ["--remote-debugging-pipe", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=open(tmp + "/stdout.log", "wb"),
        stderr=open(tmp + "/stderr.log", "wb"),
        preexec_fn=child_fds,
        close_fds=False,  # else fds 3 and 4 would be closed after child_fds
    )
except OSError as e:
    print(f"chromium.sh: cannot start {argv[0]}: {e}")
    sys.exit(3)
os.close(to_browser_r)
os.close(from_browser_w)

buf = b""
next_id = 0
deadline = time.monotonic() + limit
parent = os.getppid()  # the adapter: if it is killed (misdirect's timeout), stop and close

def send(method, params=None, session=None):
    global next_id
    next_id += 1
    msg = {"id": next_id, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    os.write(to_browser_w, json.dumps(msg).encode() + b"\0")
    return next_id

def answer(want, until):
    """The answer to command `want`, skipping events; None if the browser is gone or late."""
    global buf
    while True:
        while b"\0" in buf:
            raw, buf = buf.split(b"\0", 1)
            msg = json.loads(raw)
            if msg.get("id") == want:
                return msg
        left = until - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([from_browser_r], [], [], left)
        if not ready:
            return None
        chunk = os.read(from_browser_r, 1 << 16)
        if not chunk:
            return None
        buf += chunk

def call(method, params=None, session=None, wait=10.0):
    msg = answer(send(method, params, session), min(deadline + 15, time.monotonic() + wait))
    if msg is None:
        raise EOFError(method)
    if "error" in msg:
        raise RuntimeError(f"{method}: {msg['error']}")
    return msg["result"]

status = 0
try:
    # Let the browser settle first: shortly after start-up it rebuilds its certificate
    # verifier (twice, ~100-170 ms in), which cancels a handshake in progress; the pool then
    # opens a second connection and the journal shows an extra, failed one.
    time.sleep(settle)
    # Open the page in a fresh target so nothing loads before we watch it.
    target = call("Target.createTarget", {"url": url}, wait=30)["targetId"]
    title, page_url = "", url
    while time.monotonic() < deadline and os.getppid() == parent:
        for info in call("Target.getTargets")["targetInfos"]:
            if info["targetId"] == target:
                title, page_url = info.get("title", ""), info.get("url", "")
        if title == DONE or page_url.startswith("chrome-error:"):
            break
        time.sleep(0.1)
    if title == DONE:
        print(f'chromium.sh: page finished (title "{DONE}")')
    elif page_url.startswith("chrome-error:"):
        print(f"chromium.sh: the page itself did not load (the browser shows {page_url})")
    else:
        print(f'chromium.sh: the page did not finish within {limit:g}s (title "{title}")')
    try:
        session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        result = call("Runtime.evaluate", {
            "expression": "(document.getElementById('results') || {}).textContent",
            "returnByValue": True}, session)["result"]
        if result.get("type") == "string":
            print("results: " + result["value"])
    except (RuntimeError, EOFError) as e:
        print(f"chromium.sh: could not read #results: {e}")
    try:
        send("Browser.close")
    except OSError:
        pass
except (EOFError, OSError) as e:
    print(f"chromium.sh: lost the browser ({e.__class__.__name__}: {e})")
    status = 4
except RuntimeError as e:
    print(f"chromium.sh: DevTools error: {e}")
    status = 4
try:
    code = proc.wait(timeout=10)
except subprocess.TimeoutExpired:
    proc.kill()
    code = proc.wait()
if status == 0 and code not in (0, None):
    print(f"chromium.sh: the browser exited with {code} after closing")
if os.getppid() != parent and os.environ.get("MISDIRECT_KEEP") != "1":
    shutil.rmtree(tmp, ignore_errors=True)  # the adapter was killed: its cleanup will not run
sys.exit(status)
PYTHON
    status=$?
    [ "$status" -eq 0 ] || { cat "$tmp/driver.log" >&2; failed "driver exit $status"; }
    exit 0
fi

# No python3: virtual time. The budget is virtual milliseconds the page may use: the plan's
# pauses plus 60 s; network waits hold virtual time, so they do not count against it.
pauses=$(printf '%s' "${MISDIRECT_PLAN:-}" | grep -o '"pause_ms": *[0-9]*' | grep -o '[0-9]*$' |
    awk '{ s += $1 } END { print s + 0 }')
budget=$((pauses + 60000))
run() {
    if command -v timeout >/dev/null 2>&1; then timeout -k 5 "$limit" "$@"; else "$@"; fi
}
HOME="$tmp/home" run "$browser" "$@" --virtual-time-budget="$budget" --dump-dom \
    "$MISDIRECT_BROWSER_URL" >"$tmp/dom.html" 2>"$tmp/stderr.log"
status=$?

if grep -q '<title>misdirect: done</title>' "$tmp/dom.html"; then
    echo 'chromium.sh: page finished (title "misdirect: done")'
    sed -n 's:.*<pre id="results">\(.*\)</pre>.*:\1:p' "$tmp/dom.html" |
        sed -e 's/&quot;/"/g' -e 's/&lt;/</g' -e 's/&gt;/>/g' -e 's/&amp;/\&/g' -e 's/^/results: /'
    exit 0
fi
if [ "$status" -eq 0 ] && [ -s "$tmp/dom.html" ]; then
    title=$(sed -n 's:.*<title>\(.*\)</title>.*:\1:p' "$tmp/dom.html" | head -n 1)
    echo "chromium.sh: the page did not finish (title \"$title\")"
    exit 0
fi
[ "$status" -eq 124 ] && { echo "chromium.sh: no DOM within ${limit}s (a stalled request?)"; exit 0; }
failed "exit $status"
