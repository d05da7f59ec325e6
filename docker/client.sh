#!/bin/sh
# The client container's job: learn the harness from its control API, carry out the
# scenario's client plan with the Python h2 adapter (names resolved by Docker's DNS, so
# a.test and b.test are one IP: the client coalesces), then take the verdict.
#
#   MISDIRECT_CONTROL_URL  the control API (default http://misdirect:9000)
set -eu
control=${MISDIRECT_CONTROL_URL:-http://misdirect:9000}
curl -sSf "$control/ca.pem" -o /tmp/ca.pem
MISDIRECT_CA=/tmp/ca.pem
MISDIRECT_PLAN=$(curl -sSf "$control/plan")
export MISDIRECT_CA MISDIRECT_PLAN
python3 /clients/python_h2.py --system-dns
curl -sSf "$control/verdict" -o /tmp/verdict.json
python3 - <<'PY'
import json, sys
verdict = json.load(open("/tmp/verdict.json"))
for check in verdict["checks"]:
    print(f"{check['status'].upper():<13}  {check.get('level', ''):<6}  {check['expectation']}  {check['explanation']}")
print("verdict:", "PASS" if verdict["passed"] else "FAIL")
sys.exit(0 if verdict["passed"] else 1)
PY
