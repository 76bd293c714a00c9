# -*- test-case-name: tests.serve.test_grpc_server,tests.serve.test_grpc_server_edges -*-
"""
The gRPC server on the shim's UNIX socket, as a Twisted service.

Its handlers run on a named thread pool (see L{GrpcServerService}); this
module only binds, starts and stops it.  Stopping is graceful: new calls are
refused, calls in flight get C{grace} seconds, then the channel to the
runtime is closed (cancelling whatever still waits on it), the pool is shut
down and the socket removed.
"""

import errno
import os
import socket
import stat
from concurrent.futures import ThreadPoolExecutor

import grpc
from twisted.application import service
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from cri_shim.serve.sdnotify import notify
from cri_shim.serve.upstream import MAX_MESSAGE

SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
)

#: Worker threads for calls.  Threads are started on demand, so this is a
#: ceiling, not a cost: it is sized so that long pulls (each holds a thread
#: while it waits on the runtime) can never take every thread that quick
#: calls need.
MAX_WORKERS = 256


class SocketInUse(Exception):
    """
    Another server answers on the shim's socket.
    """


def claim_socket(path):
    """
    Make the socket's folder (mode 0711) and clear a stale socket file.

    :raise SocketInUse: when a server accepts connections on C{path}, or
        C{path} exists and is not a socket.
    """
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o711, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketInUse("{} exists and is not a socket; refusing to replace it".format(path))
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except socket.timeout:
        raise SocketInUse("{} is in use: a server holds it but does not answer".format(path))
    except OSError as e:
        if e.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
        os.unlink(path)
        return
    finally:
        probe.close()
    raise SocketInUse("another server is already listening on {}; refusing to start "
                      "(stop it, or set a different 'shim' socket)".format(path))


class GrpcServerService(service.Service):
    """
    :param path: the UNIX socket to serve on.
    :param handler: the C{grpc.GenericRpcHandler} that routes every call.
    :param upstream: the L{cri_shim.serve.upstream.Upstream} closed on stop.
    :param reactor: the reactor whose thread pool waits for the stop.
    :param grace: seconds calls in flight get to finish on stop.
    """

    name = "grpc"
    log = Logger()

    def __init__(self, path, handler, upstream, reactor, grace=5.0, max_workers=MAX_WORKERS):
        self.path = path
        self._handler = handler
        self._upstream = upstream
        self._reactor = reactor
        self._grace = grace
        self._max_workers = max_workers
        self._server = None
        self._executor = None

    def startService(self):
        service.Service.startService(self)
        self._executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="cri-shim-grpc")
        self._server = grpc.server(self._executor, handlers=[self._handler],
                                   options=SERVER_OPTIONS)
        # Create the socket without group/other write bits from the start,
        # then set exactly 0660.
        previous = os.umask(0o117)
        try:
            bound = self._server.add_insecure_port("unix:" + self.path)
            if not bound:
                raise RuntimeError("cannot listen on {}".format(self.path))
            self._server.start()
        finally:
            os.umask(previous)
        os.chmod(self.path, 0o660)
        self.log.info("serving CRI on {path} (relaying to {cri})", path=self.path,
                      cri=self._upstream.socket_path)
        # systemd (Type=notify) may start kubelet now.
        notify("READY=1")

    def stopService(self):
        service.Service.stopService(self)
        notify("STOPPING=1")
        server, executor = self._server, self._executor
        self._server = self._executor = None
        pool = self._reactor.getThreadPool()
        stopped = server.stop(self._grace)

        def wind_down():
            stopped.wait()
            self._upstream.close()
            executor.shutdown(wait=True)

        d = deferToThreadPool(self._reactor, pool, wind_down)
        d.addCallback(lambda _: self._remove_socket())
        return d

    def _remove_socket(self):
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.log.info("stopped serving on {path}", path=self.path)
