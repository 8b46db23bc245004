"""Worker-node agent: pulls jobs from a job server and runs them on this host."""

__version__ = "0.1.0"
