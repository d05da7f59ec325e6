#!/bin/sh
# misdirect adapter: OkHttp 3 from Debian's libokhttp-java (3.13.1 on bookworm), compiled with
# clients/java/Plan.java (Java 11+; tested with 17).
#
#     apt-get install -y libokhttp-java default-jdk-headless    # once
#     misdirect run scenarios/X.json -- clients/okhttp.sh
#
# OKHTTP_JARS overrides the class path (e.g. to try another OkHttp: okhttp.jar:okio.jar,
# plus kotlin-stdlib.jar for OkHttp 4+).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${OKHTTP_JARS:-}" ]; then
    okhttp=""
    okio=""
    for jar in /usr/share/java/okhttp.jar $(dpkg -L libokhttp-java 2>/dev/null | grep '/okhttp-[0-9.]*\.jar$' || true); do
        if [ -f "$jar" ]; then okhttp=$jar; break; fi
    done
    for jar in /usr/share/java/okio.jar $(dpkg -L libokio-java 2>/dev/null | grep '/okio-[0-9.]*\.jar$' || true); do
        if [ -f "$jar" ]; then okio=$jar; break; fi
    done
    if [ -z "$okhttp" ] || [ -z "$okio" ]; then
        echo "okhttp.sh: OkHttp or Okio jar not found; apt-get install -y libokhttp-java (or set OKHTTP_JARS)" >&2
        exit 2
    fi
    OKHTTP_JARS="$okhttp:$okio"
fi
# The compiled adapter, removed however the script ends.
work=$(mktemp -d "${TMPDIR:-/tmp}/misdirect-okhttp.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'rm -rf "$work"; exit 143' TERM
trap 'rm -rf "$work"; exit 130' INT
if ! javac -d "$work" -cp "$OKHTTP_JARS" "$here/java/Plan.java" "$here/okhttp/Main.java"; then
    echo "okhttp.sh: could not compile the adapter (is a JDK 11+ installed? javac is needed)" >&2
    exit 2
fi
java -cp "$work:$OKHTTP_JARS" Main "$@"
