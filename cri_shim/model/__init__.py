"""
The pure model: configuration types and their YAML schema, the ConfigMap merge
rules, image references and the rewrite decision, Go durations.

Nothing here imports Twisted, grpc or another part of the shim, and nothing
does I/O: every function takes what it needs and returns a value, so any
thread may call it and the tests are plain tables.
"""
