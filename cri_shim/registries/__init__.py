"""
[reactor] The registry clients: manifest lookups, single-flight resolution,
health checks, and the one TLS policy every outbound connection uses.

Code here runs on the reactor thread and returns Deferreds; it never imports
L{cri_shim.serve} and never blocks.
"""
