#!/bin/sh
# misdirect adapter: headless Firefox loads the harness's client page.
#
#     misdirect run SCENARIO -- clients/firefox.sh
#
# Run it only inside a loopback-only network namespace: browsers make background requests.
#     unshare -n sh -c 'ip link set lo up && misdirect run SCENARIO -- clients/firefox.sh'
#
# Fresh profile in a temporary directory: its NSS database trusts the harness's CA (certutil,
# Debian `libnss3-tools`), so expired, not yet valid or wrong-name leaves are still refused;
# its user.js turns off updates, telemetry, remote settings, captive-portal and connectivity
# checks, speculative connections, OCSP and HTTP/3, and maps the scenario's names:
#
#   localDomains (default): network.dns.localDomains lists every name; Firefox resolves them
#       to 127.0.0.1 and coalesces them. It cannot map a name to another address: such names
#       then reach 127.0.0.1 (the adapter says so).
#   hosts: when a name maps elsewhere than 127.0.0.1 and we are root with unshare, Firefox
#       runs in a private mount namespace whose /etc/hosts is MISDIRECT_HOSTS (bind mount;
#       the real file is untouched), resolving through the system resolver.
#   MISDIRECT_FIREFOX_RESOLVE=localdomains|hosts forces one.
#
# Waiting: with python3, Firefox runs with Marionette (port 0, read back from the profile)
# and a small driver navigates to the page and polls its title in real time until it is
# "misdirect: done" (pauses and every subresource, 421 retries included, take their real
# time), then reads #results and quits. Without python3: --screenshot, which waits for the
# page's load event only (later steps, fetches and pauses may be cut short).
#
# Environment: FIREFOX (browser binary; default firefox-esr, firefox), MISDIRECT_FIREFOX_TIMEOUT
# (seconds to wait for the page, default 90), MISDIRECT_FIREFOX_WAIT=marionette|screenshot
# (default marionette when python3 is there), MISDIRECT_MOZ_LOG=FILE (MOZ_LOG=nsHttp:5 there),
# MISDIRECT_KEEP=1 (keep the temporary directory).
#
# Exits 0 once the browser ran, whatever it saw (judging that is the verdict's job), also
# when the page did not finish in time; non-zero only when the browser could not run.
set -u

die() { echo "firefox.sh: $*" >&2; exit 2; }

: "${MISDIRECT_BROWSER_URL:?firefox.sh: run me under misdirect run (MISDIRECT_BROWSER_URL is unset)}"
: "${MISDIRECT_HOSTS:?firefox.sh: MISDIRECT_HOSTS is unset}"
: "${MISDIRECT_CA:?firefox.sh: MISDIRECT_CA is unset}"

browser=${FIREFOX:-}
if [ -z "$browser" ]; then
    for b in firefox-esr firefox; do
        if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
    done
fi
[ -n "$browser" ] || die "no firefox found (apt-get install firefox-esr libnss3-tools, or set FIREFOX)"
command -v certutil >/dev/null 2>&1 || die "certutil not found (apt-get install libnss3-tools)"
limit=${MISDIRECT_FIREFOX_TIMEOUT:-90}
wait_mode=${MISDIRECT_FIREFOX_WAIT:-}
if [ -z "$wait_mode" ]; then
    if command -v python3 >/dev/null 2>&1; then wait_mode=marionette; else wait_mode=screenshot; fi
fi

# The names to map: MISDIRECT_HOSTS lines "IP NAME", minus IP literals (nothing to resolve).
names=$(printf '%s\n' "$MISDIRECT_HOSTS" | awk 'NF >= 2 && $2 !~ /^[0-9.]+$/ && $2 !~ /:/ { print $2 }' |
    sort -u | paste -sd, -)
elsewhere=$(printf '%s\n' "$MISDIRECT_HOSTS" |
    awk 'NF >= 2 && $1 != "127.0.0.1" && $2 !~ /^[0-9.]+$/ && $2 !~ /:/ { printf "%s%s -> %s", s, $2, $1; s = ", " }')

resolve=${MISDIRECT_FIREFOX_RESOLVE:-}
if [ -z "$resolve" ]; then
    resolve=localdomains
    if [ -n "$elsewhere" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1; then
        resolve=hosts
    fi
fi
case $resolve in localdomains | hosts) ;; *) die "MISDIRECT_FIREFOX_RESOLVE must be localdomains or hosts" ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/misdirect-firefox.XXXXXX") || die "mktemp failed"
cleanup() {
    if [ "${MISDIRECT_KEEP:-0}" = 1 ]; then echo "firefox.sh: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
profile=$tmp/profile
mkdir -p "$profile" || die "cannot create $profile"

certutil -N -d "sql:$profile" --empty-password >"$tmp/certutil.log" 2>&1 &&
    certutil -A -d "sql:$profile" -t "C,," -n misdirect -i "$MISDIRECT_CA" >>"$tmp/certutil.log" 2>&1 ||
    { cat "$tmp/certutil.log" >&2; die "certutil could not add $MISDIRECT_CA"; }

{
    pref() { printf 'user_pref("%s", %s);\n' "$1" "$2"; }
    if [ "$resolve" = localdomains ]; then
        pref network.dns.localDomains "\"$names\""
    fi
    pref network.trr.mode 5
    pref network.dns.disablePrefetch true
    pref network.http.http3.enable false
    pref network.http.speculative-parallel-limit 0
    pref network.predictor.enabled false
    pref network.prefetch-next false
    pref browser.urlbar.speculativeConnect.enabled false
    pref browser.places.speculativeConnect.enabled false
    pref network.captive-portal-service.enabled false
    pref network.connectivity-service.enabled false
    pref network.notify.checkForProxies false
    pref network.proxy.type 0
    pref security.OCSP.enabled 0
    pref security.remote_settings.crlite_filters.enabled false
    pref security.remote_settings.intermediates.enabled false
    pref security.certerrors.mitm.priming.enabled false
    pref security.enterprise_roots.enabled false
    pref app.update.auto false
    pref app.update.disabledForTesting true
    pref app.update.checkInstallTime false
    pref app.normandy.enabled false
    pref app.shield.optoutstudies.enabled false
    pref services.settings.server '"data:,#remote-settings-dummy/v1"'
    pref messaging-system.rsexperimentloader.enabled false
    pref datareporting.policy.dataSubmissionEnabled false
    pref datareporting.healthreport.uploadEnabled false
    pref toolkit.telemetry.enabled false
    pref toolkit.telemetry.unified false
    pref toolkit.telemetry.server '""'
    pref browser.ping-centre.telemetry false
    pref browser.safebrowsing.malware.enabled false
    pref browser.safebrowsing.phishing.enabled false
    pref browser.safebrowsing.downloads.enabled false
    pref browser.safebrowsing.provider.mozilla.updateURL '""'
    pref browser.safebrowsing.provider.google4.updateURL '""'
    pref extensions.update.enabled false
    pref extensions.blocklist.enabled false
    pref extensions.getAddons.cache.enabled false
    pref media.gmp-manager.updateEnabled false
    pref browser.region.network.url '""'
    pref browser.region.update.enabled false
    pref geo.provider.network.url '""'
    pref browser.search.update false
    pref browser.newtabpage.enabled false
    pref browser.startup.page 0
    pref browser.startup.homepage_override.mstone '"ignore"'
    pref startup.homepage_welcome_url '""'
    pref browser.shell.checkDefaultBrowser false
    pref browser.aboutwelcome.enabled false
    pref browser.topsites.contile.enabled false
    pref browser.newtabpage.activity-stream.feeds.system.topstories false
    pref browser.newtabpage.activity-stream.feeds.snippets false
    pref datareporting.policy.dataSubmissionPolicyBypassNotification true
    pref toolkit.startup.max_resumed_crashes -1
    pref marionette.port 0
} >"$profile/user.js"

echo "firefox.sh: $("$browser" --version 2>/dev/null | head -n 1)"
echo "firefox.sh: trusting the harness with the CA $MISDIRECT_CA in the profile's NSS database"
case $resolve in
    localdomains)
        echo "firefox.sh: network.dns.localDomains = $names (all to 127.0.0.1)"
        [ -n "$elsewhere" ] &&
            echo "firefox.sh: WARNING: localDomains maps only to 127.0.0.1, not $elsewhere"
        ;;
    hosts)
        printf '127.0.0.1 localhost\n%s\n' "$MISDIRECT_HOSTS" >"$tmp/hosts"
        echo "firefox.sh: /etc/hosts (private mount namespace) maps $(awk '{ printf "%s%s %s", s, $2, $1; s = ", " }' "$tmp/hosts")"
        ;;
esac
echo "firefox.sh: loading $MISDIRECT_BROWSER_URL (waiting: $wait_mode, at most ${limit}s)"

if [ -n "${MISDIRECT_MOZ_LOG:-}" ]; then
    export MOZ_LOG="timestamp,nsHttp:5,nsSocketTransport:5,nsHostResolver:5" MOZ_LOG_FILE="$MISDIRECT_MOZ_LOG"
fi
export MOZ_HEADLESS=1 MOZ_CRASHREPORTER_DISABLE=1 MOZ_DISABLE_AUTO_SAFE_MODE=1

# What the browser's command starts with: in hosts mode a private mount namespace whose
# /etc/hosts is ours (the bind mount disappears with the namespace). Each step execs the
# next, so the browser keeps the pid of the job.
if [ "$resolve" = hosts ]; then
    set -- unshare -m sh -c 'mount --make-rprivate / 2>/dev/null; mount --bind "$0" /etc/hosts && exec "$@"' \
        "$tmp/hosts"
else
    set --
fi

failed() {
    echo "firefox.sh: $browser failed ($1); its output:" >&2
    tail -n 40 "$tmp/browser.log" >&2
    exit 1
}

if [ "$wait_mode" = marionette ]; then
    # Marionette: after a "LEN:" handshake, every message is LEN:JSON; commands are
    # [0, id, name, params], answers [1, id, error, result].
    "$@" "$browser" --headless --no-remote --profile "$profile" --marionette about:blank \
        >"$tmp/browser.log" 2>&1 &
    pid=$!
    python3 - "$tmp" "$limit" "$MISDIRECT_BROWSER_URL" "$pid" 2>"$tmp/driver.log" <<'PYTHON'
import json, os, shutil, signal, socket, sys, time

tmp, limit, url, pid = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
profile = os.path.join(tmp, "profile")
DONE = "misdirect: done"
started = time.monotonic()
deadline = started + limit
parent = os.getppid()  # the adapter: if it is killed (misdirect's timeout), stop and quit

def alive():
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

# The browser writes its Marionette port to the profile once it listens.
port_file = os.path.join(profile, "MarionetteActivePort")
sock = None
while sock is None:
    if time.monotonic() > started + 60 or not alive():
        print("firefox.sh: Marionette never listened")
        sys.exit(3)
    try:
        port = int(open(port_file).read().strip())
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except (OSError, ValueError):
        sock = None
        time.sleep(0.1)

buf = b""
def receive(wait):
    global buf
    sock.settimeout(wait)
    while True:
        head, colon, rest = buf.partition(b":")
        if colon:
            need = int(head)
            if len(rest) >= need:
                buf = rest[need:]
                return json.loads(rest[:need])
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise EOFError("Marionette closed the connection")
        buf += chunk

next_id = 0
def call(name, params=None, wait=15.0):
    global next_id
    next_id += 1
    body = json.dumps([0, next_id, name, params or {}]).encode()
    sock.sendall(str(len(body)).encode() + b":" + body)
    while True:
        kind, mid, error, result = receive(wait)
        if mid == next_id:
            if error:
                raise RuntimeError(f"{name}: {error.get('error')}: {error.get('message')}")
            return result

status = 0
try:
    receive(10)  # the handshake
    call("WebDriver:NewSession", {"capabilities": {"alwaysMatch": {
        "acceptInsecureCerts": False,
        "pageLoadStrategy": "none",
        "timeouts": {"script": 10000}}}}, wait=30)
    try:
        call("WebDriver:Navigate", {"url": url}, wait=30)
    except RuntimeError as e:
        # The page itself did not load (an error page): the browser ran; report and go on.
        print(f"firefox.sh: navigation failed: {e}")
        deadline = time.monotonic()
    title = ""
    while time.monotonic() < deadline and os.getppid() == parent:
        title = call("WebDriver:GetTitle")["value"]
        if title == DONE:
            break
        time.sleep(0.1)
    if title == DONE:
        print(f'firefox.sh: page finished (title "{DONE}")')
    else:
        where = call("WebDriver:GetCurrentURL")["value"]
        print(f'firefox.sh: the page did not finish within {limit:g}s (title "{title}", at {where})')
    try:
        value = call("WebDriver:ExecuteScript", {
            "script": "const r = document.getElementById('results'); return r ? r.textContent : null;",
            "args": []})["value"]
        if isinstance(value, str):
            print("results: " + value)
    except RuntimeError as e:
        print(f"firefox.sh: could not read #results: {e}")
    try:
        call("Marionette:Quit", {"flags": ["eForceQuit"]}, wait=20)
    except (RuntimeError, EOFError, OSError):
        pass
except (EOFError, OSError) as e:
    print(f"firefox.sh: lost the browser ({e.__class__.__name__}: {e})")
    status = 4
except RuntimeError as e:
    print(f"firefox.sh: Marionette error: {e}")
    status = 4
if os.getppid() != parent:
    # The adapter was killed: its cleanup will not run, so stop the browser and clean up.
    for _ in range(100):
        if not alive():
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    if os.environ.get("MISDIRECT_KEEP") != "1":
        shutil.rmtree(tmp, ignore_errors=True)
sys.exit(status)
PYTHON
    status=$?
    # Let it quit (Marionette:Quit), then make sure.
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    [ "$status" -eq 0 ] || { cat "$tmp/driver.log" >&2; failed "driver exit $status"; }
    exit 0
fi

# No python3: --screenshot waits for the page's load event (later steps may be cut short).
bound=""
command -v timeout >/dev/null 2>&1 && bound="timeout -k 5 $limit"
"$@" $bound "$browser" --headless --no-remote --profile "$profile" \
    --screenshot "$tmp/page.png" "$MISDIRECT_BROWSER_URL" >"$tmp/browser.log" 2>&1
status=$?
if [ -s "$tmp/page.png" ]; then
    echo "firefox.sh: page loaded (screenshot mode: no #results; install python3 for a full wait)"
    exit 0
fi
failed "exit $status"
