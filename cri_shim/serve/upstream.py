# -*- test-case-name: tests.serve.test_upstream,tests.serve.test_image_service,tests.serve.test_grpc_server,tests.serve.test_grpc_server_edges -*-
"""
[worker threads] The runtime's gRPC channel, and the helpers every relayed
call uses: the caller's deadline and metadata forwarded, the runtime's status
code, details and trailing metadata handed back unchanged.

Messages cross as raw bytes: the channel has no serializers, so nothing the
shim does not rewrite is ever parsed.
"""

import grpc
from twisted.internet.defer import CancelledError

#: Message size limit, each way (the Go shim's receive limit).
MAX_MESSAGE = 16 * 1024 * 1024

CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    # Reconnect quickly once the runtime is back (the default backoff grows
    # to two minutes, which would keep pods waiting after a runtime restart).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Not a backoff, despite its name: gRPC core's minimum connect timeout,
    # how long a connection attempt may take to get the server's HTTP/2
    # SETTINGS.  At 100 ms, a runtime (or a shim) slow to answer a new
    # connection, as when it is busy starting, failed calls with UNAVAILABLE.
    ("grpc.min_reconnect_backoff_ms", 5000),
)

# Headers gRPC itself manages; relaying them would confuse the next hop.
_RESERVED = frozenset(["user-agent", "content-type", "te", "host", "authority"])

# Streaming method paths whose multicallables are kept.
_MAX_KEPT = 64

# A deadline further away than this means the caller set none.
_NO_DEADLINE = 1e8


class Upstream:
    """
    The channel to the runtime's socket, with one multicallable per method
    path made on first use and kept.

    :param socket_path: the runtime's UNIX socket.
    """

    def __init__(self, socket_path):
        self.socket_path = socket_path
        self._channel = grpc.insecure_channel("unix:" + socket_path, options=CHANNEL_OPTIONS)
        self._unary = {}
        self._stream = {}

    def unary(self, path):
        """
        :return: a raw-bytes unary-unary multicallable for C{path}.
        """
        call = self._unary.get(path)
        if call is None:
            call = self._unary[path] = self._channel.unary_unary(path)
        return call

    def stream(self, path):
        """
        :return: a raw-bytes stream-stream multicallable for C{path}; kept
            for the next call, up to L{_MAX_KEPT} paths (callers may make up
            endless method paths).
        """
        call = self._stream.get(path)
        if call is None:
            call = self._channel.stream_stream(path)
            if len(self._stream) < _MAX_KEPT:
                self._stream[path] = call
        return call

    def runtime_answers(self, timeout):
        """
        [worker thread] Whether the runtime answers a C{Version} call (any
        answer but UNAVAILABLE or a timeout counts).
        """
        try:
            self.unary("/runtime.v1.RuntimeService/Version")(b"", timeout=timeout)
        except grpc.RpcError as error:
            return error.code() not in (grpc.StatusCode.UNAVAILABLE,
                                        grpc.StatusCode.DEADLINE_EXCEEDED)
        return True

    def close(self):
        """
        Close the channel, cancelling every call still in flight on it.
        """
        self._channel.close()


def thd_timeout(context, default):
    """
    :return: the seconds left of the caller's deadline, or C{default} when
        it set none.
    """
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE:
        return default
    return remaining


def thd_call(call, body, context, default_timeout):
    """
    Call the runtime with the caller's deadline (or C{default_timeout}) and
    metadata.

    :return: the runtime's raw response.
    :raise Abort: with the runtime's status when it fails the call.
    """
    try:
        return call(body, timeout=thd_timeout(context, default_timeout),
                    metadata=thd_metadata(context))
    except grpc.RpcError as error:
        raise Abort.from_rpc_error(error)


def guarded(method, log):
    """
    :return: a gRPC handler calling C{method(request, context)}: an
        L{Abort} ends the call with its status, a cancelled lookup with
        CANCELLED, anything else with INTERNAL, logged on C{log}.
    """
    def handler(request, context):
        try:
            return method(request, context)
        except Abort as abort:
            abort.apply(context)
        except CancelledError:
            # The caller cancelled the call or its deadline passed: the
            # lookup was cancelled with it (cri_shim.serve.bridge).  Not a fault.
            context.abort(grpc.StatusCode.CANCELLED, "cancelled by the caller")
        except Exception:
            log.failure("{method} failed inside the shim", method=method.__name__)
            context.abort(grpc.StatusCode.INTERNAL,
                          "image-cri-shim internal error; see the shim's log")
    return handler


def thd_metadata(context):
    """
    :return: the caller's metadata, less what gRPC manages itself.
    """
    return tuple(
        (key, value) for key, value in context.invocation_metadata()
        if not (key in _RESERVED or key.startswith((":", "grpc-")))
    )


class Abort(Exception):
    """
    End a call with this status: raised by handler code, applied to the
    call's context by L{apply}.
    """

    def __init__(self, code, details, trailing=()):
        Exception.__init__(self, code, details)
        self.code = code
        self.details = details
        self.trailing = trailing

    @classmethod
    def from_rpc_error(cls, error):
        """
        :param error: the C{grpc.RpcError} the runtime answered with.
        :return: an L{Abort} handing back its status, details and trailing
            metadata unchanged.
        """
        trailing = tuple(
            (key, value) for key, value in (error.trailing_metadata() or ())
            if not (key in _RESERVED or key.startswith(":"))
            and key not in ("grpc-status", "grpc-message"))
        return cls(error.code(), error.details() or "", trailing)

    def apply(self, context):
        """
        End the call on C{context}.

        :raise Exception: always (that is how grpc ends a call).
        """
        if self.trailing:
            context.set_trailing_metadata(self.trailing)
        context.abort(self.code, self.details)
