"""Pure builders of every non-trivial shell command the deploy runs, one module per tool
(Kamal's commands/ are the model); unit-tested on the whole string or run in a shell, no host.

Secrets never appear in a command: psql and pg_dump read a pgpass file, redis-cli reads
REDISCLI_AUTH from a file at run time, the service reads its .env.
"""
