"""
The floor: the least a Python gRPC proxy can do.  A grpcio sync server on a
UNIX socket whose one generic handler relays every method path, unary-unary,
as raw bytes to the runtime's socket, passing the caller's deadline and the
runtime's status back.  No Twisted, no parsing, no metadata handling.

    python bench/floor_proxy.py LISTEN_SOCKET RUNTIME_SOCKET

The image-cri-shim relays the same way (same grpcio, same thread-pool
server, same channel options); whatever it costs above this is its own.
"""

import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc

MAX_MESSAGE = 16 * 1024 * 1024
OPTIONS = (("grpc.max_receive_message_length", MAX_MESSAGE),
           ("grpc.max_send_message_length", MAX_MESSAGE))
MAX_WORKERS = 256  # the shim's ceiling too; threads start on demand


class Relay(grpc.GenericRpcHandler):
    def __init__(self, channel):
        self._channel = channel
        self._calls = {}

    def service(self, details):
        call = self._calls.get(details.method)
        if call is None:
            call = self._calls[details.method] = self._channel.unary_unary(details.method)

        def relay(request, context):
            remaining = context.time_remaining()
            try:
                return call(request, timeout=remaining if remaining < 1e8 else None)
            except grpc.RpcError as e:
                context.abort(e.code(), e.details() or "")

        return grpc.unary_unary_rpc_method_handler(relay)


def main(listen, upstream):
    channel = grpc.insecure_channel("unix:" + upstream, options=OPTIONS)
    server = grpc.server(ThreadPoolExecutor(MAX_WORKERS), handlers=[Relay(channel)],
                         options=OPTIONS)
    if os.path.exists(listen):
        os.unlink(listen)
    server.add_insecure_port("unix:" + listen)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(1))
    server.wait_for_termination()


if __name__ == "__main__":
    main(*sys.argv[1:3])
