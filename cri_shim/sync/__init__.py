"""
[reactor] The control path that keeps the configuration current: the file
reloader, the ConfigMap client, cluster discovery, atomic file writes and the
periodic ticker under them.

Code here runs on the reactor thread (blocking file work is handed to a
thread and awaited as a Deferred); it never imports L{cri_shim.serve}.
"""
