"""Runs the public SCIM compliance checker scim2-tester against a running idgate.

Usage: scim_compliance.py BASE_URL TOKEN
Prints one line per check and exits non-zero if any check reports ERROR or CRITICAL.
"""

import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

FAILING = {Status.ERROR, Status.CRITICAL}


def main() -> int:
    base_url, token = sys.argv[1], sys.argv[2]
    http = Client(base_url=f"{base_url}/scim/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    results = check_server(SyncSCIMClient(http))
    failures = 0
    for result in results:
        where = f"[{result.resource_type}] " if result.resource_type else ""
        print(f"{result.status.name:10} {where}{result.title}: {result.reason or ''}")
        failures += result.status in FAILING
    passed = sum(result.status not in FAILING and result.status != Status.SKIPPED for result in results)
    print(f"scim2-tester: {passed} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
