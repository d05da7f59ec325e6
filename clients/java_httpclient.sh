#!/bin/sh
# misdirect adapter: Java's built-in java.net.http.HttpClient (Java 11+; tested with 17), run as
# a single-file Java source program, HTTP/2 preferred.
#
#     apt-get install -y default-jdk-headless    # once
#     misdirect run scenarios/X.json -- clients/java_httpclient.sh
#
# HttpClient takes no resolver, so names are mapped with -Djdk.net.hosts.file, which must be set
# when the JVM starts and REPLACES system DNS: a first run of Main.java writes the plan's names
# (each with its `connect` IP, plus localhost) to a temporary hosts file, and the second run,
# which carries out the plan, removes it when done.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
hosts=$(mktemp "${TMPDIR:-/tmp}/misdirect-java-hosts.XXXXXX")
if ! java "$here/java_httpclient/Main.java" --write-hosts "$hosts"; then
    rm -f "$hosts"
    echo "java_httpclient.sh: could not write the hosts file (is a JDK 11+ installed?)" >&2
    exit 2
fi
exec java "-Djdk.net.hosts.file=$hosts" "$here/java_httpclient/Main.java" --remove-hosts-file "$hosts"
