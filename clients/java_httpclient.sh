#!/bin/sh
# misdirect adapter: Java's built-in java.net.http.HttpClient (Java 11+; tested with 17), HTTP/2
# preferred, compiled with clients/java/Plan.java.
#
#     apt-get install -y default-jdk-headless    # once
#     misdirect run scenarios/X.json -- clients/java_httpclient.sh
#
# HttpClient takes no resolver, so names are mapped with -Djdk.net.hosts.file, which must be set
# when the JVM starts and REPLACES system DNS: a first run writes the plan's names (each with
# its `connect` IP, plus localhost) to a temporary hosts file, and the second run carries out
# the plan.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
# The compiled adapter and the hosts file, removed however the script ends.
work=$(mktemp -d "${TMPDIR:-/tmp}/misdirect-java.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'rm -rf "$work"; exit 143' TERM
trap 'rm -rf "$work"; exit 130' INT
if ! javac -d "$work/classes" "$here/java/Plan.java" "$here/java_httpclient/Main.java"; then
    echo "java_httpclient.sh: could not compile the adapter (is a JDK 11+ installed? javac is needed)" >&2
    exit 2
fi
java -cp "$work/classes" Main --write-hosts "$work/hosts"
java "-Djdk.net.hosts.file=$work/hosts" -cp "$work/classes" Main
