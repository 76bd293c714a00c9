# -*- test-case-name: tests.serve.test_grpc_server -*-
"""
A CRI runtime on a real gRPC server that records what it is sent, for tests
of the relay.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from cri_shim.serve import methods


class FakeRuntime:
    """
    A CRI runtime on a real gRPC server, for tests of the relay: it records
    the raw bytes, deadline and metadata of every call and answers
    ImageStatus, PullImage and RemoveImage from C{images}; any other method
    echoes its request bytes back, except those in C{failures}.

    :ivar images: image name -> image id, as the runtime holds them.
    :ivar failures: method name or image name -> C{(grpc.StatusCode,
        details)} to fail with.
    :ivar calls: C{(path, raw request, time remaining, metadata)} tuples.
    :ivar delays: method name (image name for a pull) -> seconds to answer it.
    :ivar arrived: a C{threading.Event} set when a call arrives.
    """

    def __init__(self, socket_path, package="runtime.v1"):
        self.api = methods.API[package]
        self.images = {}
        self.failures = {}
        self.calls = []
        self.delays = {}
        self.arrived = threading.Event()
        self.stream_items = [b"one", b"two", b"three"]
        self._server = grpc.server(ThreadPoolExecutor(8), handlers=[self._Router(self)],
                                   options=[("grpc.max_receive_message_length", 64 << 20),
                                            ("grpc.max_send_message_length", 64 << 20)])
        self._server.add_insecure_port("unix:" + socket_path)
        self._server.start()

    def stop(self):
        """
        Stop the server at once.
        """
        self._server.stop(None).wait()

    class _Router:
        def __init__(self, runtime):
            self.runtime = runtime

        def service(self, details):
            path = details.method
            if path.endswith("/StreamImages"):
                return grpc.unary_stream_rpc_method_handler(
                    lambda raw, context: self.runtime._stream(path, raw, context))
            return grpc.unary_unary_rpc_method_handler(
                lambda raw, context: self.runtime._unary(path, raw, context))

    def _record(self, path, raw, context):
        self.calls.append((path, raw, context.time_remaining(),
                           dict(context.invocation_metadata())))
        self.arrived.set()

    def _fail_if(self, key, context):
        failure = self.failures.get(key)
        if failure is not None:
            code, details = failure
            context.set_trailing_metadata((("x-runtime", "failed"),))
            context.abort(code, details)

    def _unary(self, path, raw, context):
        self._record(path, raw, context)
        method = path.rsplit("/", 1)[1]
        if method in self.delays:
            time.sleep(self.delays[method])
        self._fail_if(method, context)
        api = self.api
        if method == "ImageStatus":
            name = api.ImageStatusRequest.FromString(raw).image.image
            response = api.ImageStatusResponse()
            if name in self.images:
                response.image.id = self.images[name]
                response.image.repo_tags.append(name)
            return response.SerializeToString()
        if method == "PullImage":
            name = api.PullImageRequest.FromString(raw).image.image
            time.sleep(self.delays.get(name, 0))
            self._fail_if(name, context)
            self.images[name] = "sha256:" + "%064x" % (len(self.images) + 1)
            return api.PullImageResponse(image_ref=self.images[name]).SerializeToString()
        if method == "RemoveImage":
            self.images.pop(api.RemoveImageRequest.FromString(raw).image.image, None)
            return b""
        return raw

    def _stream(self, path, raw, context):
        self._record(path, raw, context)
        self._fail_if(path.rsplit("/", 1)[1], context)
        for item in self.stream_items:
            yield item
