"""
The test suite.  Imported under trial, it switches on the suite-wide secret
check: see L{tests.secrets_guard}.
"""

import os

# The suites fork children (containerd, registries, shims) from a process
# that uses gRPC; gRPC's fork handlers can crash such a child before it
# execs (grpc/grpc#43055).  This must be set before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from tests import secrets_guard  # noqa: E402

secrets_guard.install()
