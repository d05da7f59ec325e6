#!/usr/bin/env python3
"""misdirect adapter: httpx with HTTP/2 (httpcore's connection pool over python-hyper/h2).

    misdirect run scenarios/X.json -- .venv/bin/python clients/httpx_h2.py
    (needs `pip install 'httpx[http2]'`)

Carries out the client plan that `misdirect run` puts in MISDIRECT_PLAN, in order, with ONE
httpx.Client(http2=True): its normal connection pool, coalescing and retry rules, all defaults
(httpx retries nothing unless told; this adapter adds nothing either).
  - names: socket.getaddrinfo is patched to answer each plan host name with its `connect` IP
    (other names go to the real resolver); the URL keeps the name, so SNI, :authority and the
    certificate check use the name;
  - trust: verify= an ssl context whose only CA is MISDIRECT_CA.

Prints one JSON line per request: the status and HTTP version, or the error. Exits 0 once the
plan is carried out, whatever the answers (a refused certificate is an answer too): judging
them is the verdict's job.
"""
import json
import os
import socket
import ssl
import sys
import time

import httpx


def main():
    plan = json.loads(os.environ["MISDIRECT_PLAN"])
    names = {}
    for step in plan["steps"]:
        if "request" in step:
            r = step["request"]
            names[r["host"].lower()] = r["connect"].rsplit(":", 1)[0].strip("[]")

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        ip = names.get(name.lower()) if isinstance(name, str) else None
        return real_getaddrinfo(ip if ip is not None else host, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo

    context = ssl.create_default_context(cafile=os.environ["MISDIRECT_CA"])
    with httpx.Client(http2=True, verify=context, timeout=30) as client:
        for step in plan["steps"]:
            if "pause_ms" in step:
                time.sleep(step["pause_ms"] / 1000)
                continue
            r = step["request"]
            started = time.monotonic()
            line = {"url": r["url"]}
            try:
                body = r["body"].encode() if r.get("body") is not None else None
                response = client.request(r["method"], r["url_with_port"], headers=r.get("headers") or {}, content=body)
                line.update(status=response.status_code, http_version=response.http_version, bytes=len(response.content))
            except Exception as error:  # an answer too: report it and go on
                line["error"] = f"{type(error).__name__}: {error}"
            line["ms"] = round((time.monotonic() - started) * 1000)
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as error:
        print(f"httpx_h2 adapter broke: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(2)
