# -*- test-case-name: tests.serve.test_sdnotify -*-
"""
systemd's readiness protocol (C{Type=notify}): one datagram to
C{$NOTIFY_SOCKET}, without a dependency on libsystemd.
"""

import os
import socket


def notify(state, environ=None):
    """
    Send C{state} (e.g. C{"READY=1"}) to the service manager, if there is
    one.

    :param environ: the environment (C{os.environ} by default).
    :return: whether a message was sent.
    """
    environ = os.environ if environ is None else environ
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        # An abstract socket: the name starts with a NUL byte.
        address = "\0" + address[1:]
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sender.connect(address)
        sender.sendall(state.encode("utf-8"))
    except OSError:
        return False
    finally:
        sender.close()
    return True
