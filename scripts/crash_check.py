"""Crash check: every write idgate acknowledged survives a SIGKILL.

Run by scripts/crash-check, which builds idgate and names the database. Each round: start the
server, drive SCIM creates and group member adds from a few threads, kill the server with SIGKILL
at a random moment, start it again, and check that every write answered 2xx is there and that the
database is consistent (SQLite's integrity check; no membership without its user or group).
"""

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

IDGATE = os.environ["IDGATE_BIN"]
DATABASE_URL = os.environ["IDGATE_DATABASE_URL"]
ROUNDS = int(os.environ.get("CRASH_ROUNDS", "3"))
THREADS = 4
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def cli(*args):
    out = subprocess.run([IDGATE, *args], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        env = dict(os.environ, IDGATE_BIND=f"127.0.0.1:{port}", IDGATE_RATE_LIMIT="0", RUST_LOG="warn")
        self.process = subprocess.Popen([IDGATE, "serve"], env=env, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=1)
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        raise SystemExit("idgate did not start")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def call(base, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/scim+json")
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
        return response.status, (json.loads(raw) if raw else None)


def load(base, token, group, label, acknowledged, stop):
    """Creates users and adds each to the group; records what was answered 2xx."""
    n = 0
    while not stop.is_set():
        n += 1
        try:
            status, user = call(base, token, "POST", "/scim/v2/Users",
                                {"schemas": [USER], "userName": f"{label}-{n}@example.com"})
            if status != 201:
                continue
            acknowledged.append(("user", user["id"]))
            status, _ = call(base, token, "PATCH", f"/scim/v2/Groups/{group}", {
                "schemas": [PATCH],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}],
            })
            if status == 204:
                acknowledged.append(("member", user["id"]))
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            if stop.is_set():
                return
            time.sleep(0.01)


def consistent():
    if DATABASE_URL.startswith("sqlite://"):
        db = sqlite3.connect(DATABASE_URL[len("sqlite://"):])
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "SQLite integrity"
        query = db.execute
        orphans = query(
            "SELECT count(*) FROM scim_group_members m LEFT JOIN scim_users u ON u.id = m.member_id "
            "WHERE m.member_type = 'User' AND u.id IS NULL").fetchone()[0]
    else:
        out = subprocess.run(
            ["psql", "-tA", DATABASE_URL, "-c",
             "SELECT count(*) FROM scim_group_members m LEFT JOIN scim_users u ON u.id = m.member_id "
             "WHERE m.member_type = 'User' AND u.id IS NULL"],
            check=True, capture_output=True, text=True)
        orphans = int(out.stdout.strip())
    assert orphans == 0, f"{orphans} memberships without their user"


def main():
    cli("workspace", "create", "crash")
    token = cli("token", "create", "--workspace", "crash", "--scopes", "scim")
    server = Server(free_port())
    _, group = call(server.base, token, "POST", "/scim/v2/Groups", {"schemas": [GROUP], "displayName": "Everyone"})
    group = group["id"]
    total = 0
    for round_number in range(1, ROUNDS + 1):
        acknowledged, stop = [], threading.Event()
        threads = [threading.Thread(target=load, args=(server.base, token, group, f"r{round_number}t{t}", acknowledged, stop))
                   for t in range(THREADS)]
        for thread in threads:
            thread.start()
        time.sleep(random.uniform(1.0, 3.0))
        server.kill()
        stop.set()
        for thread in threads:
            thread.join()
        server = Server(free_port())
        consistent()
        users = [id for kind, id in acknowledged if kind == "user"]
        members = {id for kind, id in acknowledged if kind == "member"}
        for user in users:
            status, _ = call(server.base, token, "GET", f"/scim/v2/Users/{user}")
            assert status == 200, f"acknowledged user {user} is missing"
        _, kept = call(server.base, token, "GET", f"/scim/v2/Groups/{group}")
        kept = {m["value"] for m in kept.get("members", [])}
        lost = members - kept
        assert not lost, f"acknowledged member adds lost: {sorted(lost)[:5]}"
        total += len(acknowledged)
        print(f"round {round_number}: killed after {len(users)} creates and {len(members)} member adds; all there",
              flush=True)
    server.kill()
    print(f"crash check passed: {ROUNDS} rounds, {total} acknowledged writes, none lost")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as failure:
        sys.exit(f"crash check failed: {failure}")
