#!/bin/sh
# misdirect adapter: headless Chromium loads the harness's client page.
#
#     misdirect run SCENARIO -- clients/chromium.sh
#
# Run it only inside a loopback-only network namespace: browsers make background requests.
#     unshare -n sh -c 'ip link set lo up && misdirect run SCENARIO -- clients/chromium.sh'
#
# Uses a fresh profile (and a fresh $HOME for the NSS database) in a temporary directory,
# maps the scenario's names with --host-resolver-rules (every other name fails to resolve:
# belt and braces against background requests), and trusts the harness's CA through
# an NSS database (certutil, Debian `libnss3-tools`), so that certificates that are expired,
# not yet valid or for another name are still refused. Without certutil it falls back to
# --ignore-certificate-errors-spki-list (which would accept those invalid leaves too).
#
# Waits for the page to finish: --virtual-time-budget lets the page's timers run while
# network fetches (421 retries included) hold virtual time, then --dump-dom prints the DOM;
# the adapter checks that the title became "misdirect: done" and prints #results.
#
# Environment: CHROMIUM (browser binary, default: chromium, chromium-browser,
# google-chrome), MISDIRECT_CHROMIUM_BUDGET_MS (virtual time budget, default the plan's pauses
# plus 60000),
# MISDIRECT_CHROMIUM_TIMEOUT (wall-clock seconds, default 90), MISDIRECT_NETLOG=FILE (write a
# net-log there), MISDIRECT_KEEP=1 (keep the temporary directory and print its path).
# Exits 0 once the browser ran (whatever it saw: judging is the verdict's job), non-zero
# only when the browser could not run.
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
# Virtual time the page may use: the plan's pauses plus 60 s (network waits do not count).
pauses=$(printf '%s' "${MISDIRECT_PLAN:-}" | grep -o '"pause_ms": *[0-9]*' | grep -o '[0-9]*$' |
    awk '{ s += $1 } END { print s + 0 }')
budget=${MISDIRECT_CHROMIUM_BUDGET_MS:-$((pauses + 60000))}
limit=${MISDIRECT_CHROMIUM_TIMEOUT:-90}

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
    trust="leaf SPKI list (certutil missing: invalid leaves will be accepted too)"
else
    die "neither MISDIRECT_CA with certutil nor MISDIRECT_SPKI_LIST to trust the harness"
fi

set -- --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --disable-quic \
    --no-first-run --no-default-browser-check --disable-background-networking \
    --disable-component-update --disable-sync --disable-extensions \
    --disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,HttpsUpgrades \
    --metrics-recording-only --password-store=basic --use-mock-keychain \
    --user-data-dir="$tmp/profile" \
    --host-resolver-rules="$MISDIRECT_HOST_RESOLVER_RULES,MAP * ~NOTFOUND" \
    --virtual-time-budget="$budget" --dump-dom
case $trust in
    leaf*) set -- "$@" --ignore-certificate-errors-spki-list="$MISDIRECT_SPKI_LIST" ;;
esac
[ -n "${MISDIRECT_NETLOG:-}" ] && set -- "$@" --log-net-log="$MISDIRECT_NETLOG" --net-log-capture-mode=Default

echo "chromium.sh: $("$browser" --version 2>/dev/null | head -n 1)"
echo "chromium.sh: trusting the harness with the $trust"
echo "chromium.sh: $MISDIRECT_HOST_RESOLVER_RULES"
echo "chromium.sh: loading $MISDIRECT_BROWSER_URL"

run() {
    if command -v timeout >/dev/null 2>&1; then
        timeout -k 5 "$limit" "$@"
    else
        "$@"
    fi
}

HOME="$tmp/home" run "$browser" "$@" "$MISDIRECT_BROWSER_URL" >"$tmp/dom.html" 2>"$tmp/stderr.log"
status=$?

if grep -q '<title>misdirect: done</title>' "$tmp/dom.html"; then
    echo "chromium.sh: page finished (title \"misdirect: done\")"
    # The page's #results: one JSON array, entities unescaped.
    sed -n 's:.*<pre id="results">\(.*\)</pre>.*:\1:p' "$tmp/dom.html" |
        sed -e 's/&quot;/"/g' -e 's/&lt;/</g' -e 's/&gt;/>/g' -e 's/&amp;/\&/g' |
        sed 's/^/results: /'
    exit 0
fi

if [ -s "$tmp/dom.html" ]; then
    title=$(sed -n 's:.*<title>\(.*\)</title>.*:\1:p' "$tmp/dom.html" | head -n 1)
    echo "chromium.sh: the page did not finish (title \"$title\"; browser exit $status)"
    # The browser ran and loaded something: let the verdict judge what it saw.
    [ "$status" -eq 0 ] && exit 0
fi
echo "chromium.sh: $browser failed (exit $status); its stderr:" >&2
tail -n 40 "$tmp/stderr.log" >&2
exit 1
