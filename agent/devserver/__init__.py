"""The reference job server (`agent devserver`): PROTOCOL.md over stdlib HTTP and sqlite.

For demos, tests and benchmarks, not for production. It reproduces the real server's
status codes and quirks (HTML 500s from bare asserts, the abort quirk, soft-deleted
outputs blocking re-uploads) but makes `acquire` atomic.
"""

from agent.devserver.app import DevServer
from agent.devserver.cli import main
from agent.devserver.models import RecordedRequest, User

__all__ = ["DevServer", "RecordedRequest", "User", "main"]
