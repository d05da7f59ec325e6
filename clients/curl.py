#!/usr/bin/env python3
"""misdirect adapter: curl (HTTP/2) with its normal connection reuse.

Carries out MISDIRECT_PLAN with one curl process per run of requests between pauses, each
request a `--next` segment, so curl may reuse connections as it always does. Every name is
mapped to the harness with `--resolve`, and the harness's CA is trusted with `--cacert`.

    curl.py [--http1.1]

Prints one line per request (curl's `-w`): status, HTTP version, connections opened.
Exits 0 once the plan is carried out, whatever the answers.
"""
import json
import os
import subprocess
import sys
import time


def segment(request, version):
    host, port = request["host"], request["connect"].rsplit(":", 1)[1]
    ip = request["connect"].rsplit(":", 1)[0]
    args = [
        version, "-sS", "-o", "/dev/null",
        "--cacert", os.environ["MISDIRECT_CA"],
        "--resolve", f"{host}:{port}:{ip.strip('[]')}",
        "-X", request["method"],
        "-w", '{"url": "%{url}", "status": %{http_code}, "http_version": "%{http_version}", "new_connections": %{num_connects}}\\n',
    ]
    for name, value in request["headers"].items():
        args += ["-H", f"{name}: {value}"]
    if request["body"] is not None:
        args += ["--data-binary", request["body"]]
    return args + [request["url_with_port"]]


def run(batch, version):
    if not batch:
        return
    command = ["curl"]
    for i, request in enumerate(batch):
        if i:
            command.append("--next")
        command += segment(request, version)
    subprocess.run(command, check=False)


def main():
    version = "--http1.1" if "--http1.1" in sys.argv[1:] else "--http2"
    batch = []
    for step in json.loads(os.environ["MISDIRECT_PLAN"])["steps"]:
        if "pause_ms" in step:
            run(batch, version)
            batch = []
            time.sleep(step["pause_ms"] / 1000)
        else:
            batch.append(step["request"])
    run(batch, version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
