# -*- test-case-name: tests.serve.test_image_service,tests.serve.test_grpc_server,tests.serve.test_passthrough_edges -*-
"""
[worker threads] Relay every call the shim does not rewrite to the runtime,
as raw bytes, by method path: RuntimeService, ImageService C{ListImages} and
C{ImageFsInfo}, streaming methods, and methods added to CRI after this shim
was written.
"""

import grpc

from cri_shim.serve import methods
from cri_shim.metrics import Metrics, split
from cri_shim.serve.upstream import Abort, thd_metadata, thd_timeout


class ProxyHandler(grpc.GenericRpcHandler):
    """
    Routes each call: the rewriting handlers by exact path, every other path
    to a raw relay.

    :param upstream: the L{cri_shim.serve.upstream.Upstream}.
    :param rewriting: a dict of method path to C{grpc.RpcMethodHandler}.
    :param timeout: a callable returning the deadline, in seconds, for
        unary calls whose caller set none (config C{timeout}).
    :param metrics: the L{cri_shim.metrics.Metrics} counting calls.
    """

    def __init__(self, upstream, rewriting, timeout, metrics=None):
        self._upstream = upstream
        self._timeout = timeout
        self._metrics = metrics or Metrics()
        self._handlers = {
            path: grpc.unary_unary_rpc_method_handler(
                self._metrics.instrument(path, self._unary_relay(path)))
            for path in methods.UNARY}
        # A rewriting handler takes its method over from the plain relay.
        self._handlers.update(rewriting)

    def service(self, handler_call_details):
        path = handler_call_details.method
        handler = self._handlers.get(path)
        if handler is None:
            handler = grpc.stream_stream_rpc_method_handler(self._stream_relay(path))
        return handler

    def _unary_relay(self, path):
        call = self._upstream.unary(path)
        timeout = self._timeout

        def relay(request, context):
            try:
                return call(request, timeout=thd_timeout(context, timeout()),
                            metadata=thd_metadata(context))
            except grpc.RpcError as error:
                Abort.from_rpc_error(error).apply(context)

        return relay

    def _stream_relay(self, path):
        call = self._upstream.stream(path)
        service, method = _labels(path)
        calls = self._metrics.calls

        def relay(requests, context):
            remaining = thd_timeout(context, None)
            responses = call(requests, timeout=remaining, metadata=thd_metadata(context))
            context.add_callback(responses.cancel)
            code = "OK"
            try:
                for response in responses:
                    yield response
            except grpc.RpcError as error:
                code = error.code().name
                Abort.from_rpc_error(error).apply(context)
            finally:
                calls.inc(service, method, code)

        return relay


def _labels(path):
    """
    :return: the C{(service, method)} metric labels of a streamed call: its
        own for a server-streaming CRI method (L{methods.STREAMING}),
        C{("other", "other")} for any other path (made-up paths must not
        make up labels).
    """
    return split(path) if path in methods.STREAMING else ("other", "other")
