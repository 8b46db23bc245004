"""The reference server in its own process, with its request log readable from outside.

`agent devserver` keeps a request log but offers no way to read it from another
process; this wrapper runs the same :class:`DevServer` and answers one command per
line on stdin (one JSON line on stdout each):

- ``log``: the requests answered since the last ``log``, as
  ``[method, path, status, node_id, time]`` lists (``null`` once the server's log of
  the last 100 000 requests has overflowed: the figures would be wrong);
- ``quit`` (or end of input): stop.

The first stdout line is ``listening on URL``. Run by :class:`bench.common.DevServerProcess`.
"""

from __future__ import annotations

import argparse
import json
import sys

from agent.devserver import DevServer
from agent.devserver.recorder import MAX_ENTRIES


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    with DevServer(port=0, db_path=args.db) as server:
        print(f"listening on {server.url}", flush=True)
        seen = 0
        for line in sys.stdin:
            command = line.strip()
            if command == "log":
                entries = server.request_log()
                if len(entries) >= MAX_ENTRIES:
                    print("null", flush=True)
                    continue
                rows = [[e.method, e.path, e.status, e.node_id, e.time] for e in entries[seen:]]
                seen = len(entries)
                print(json.dumps(rows), flush=True)
            elif command == "quit":
                break
            else:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
