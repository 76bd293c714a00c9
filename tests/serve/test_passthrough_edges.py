"""
Edge cases of L{cri_shim.serve.passthrough}'s stream relay found by mutation
testing (make mutate): the caller's deadline on a stream, and the calls
metric's labels for streamed, failed and made-up methods.
"""

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor

import grpc
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.metrics import Metrics
from cri_shim.serve import methods
from cri_shim.serve.grpc_server import SERVER_OPTIONS
from cri_shim.serve.passthrough import ProxyHandler
from cri_shim.serve.upstream import CHANNEL_OPTIONS, Upstream
from cri_shim.testing import FakeRuntime

STREAM = methods.path("runtime.v1", "ImageService", "StreamImages")


class StreamRelayTests(SynchronousTestCase):
    """
    A relay (L{ProxyHandler}, no rewriting handlers) in front of a
    L{FakeRuntime}, over real UNIX sockets.
    """

    def setUp(self):
        folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, folder, True)
        self.runtime = FakeRuntime(os.path.join(folder, "runtime.sock"))
        self.addCleanup(self.runtime.stop)
        upstream = Upstream(os.path.join(folder, "runtime.sock"))
        self.addCleanup(upstream.close)
        self.metrics = Metrics()
        server = grpc.server(ThreadPoolExecutor(4), options=SERVER_OPTIONS,
                             handlers=[ProxyHandler(upstream, {}, lambda: 60.0, self.metrics)])
        server.add_insecure_port("unix:" + os.path.join(folder, "shim.sock"))
        server.start()
        self.addCleanup(lambda: server.stop(None).wait())
        self.channel = grpc.insecure_channel("unix:" + os.path.join(folder, "shim.sock"),
                                             options=CHANNEL_OPTIONS)
        self.addCleanup(self.channel.close)

    def counted(self):
        """
        :return: C{{(service, method, code): calls}} from the calls metric.
        """
        return {(labels["service"], labels["method"], labels["code"]): value
                for _, labels, value in self.metrics.calls.samples()}

    def test_stream_deadline(self):
        """
        A streamed call reaches the runtime with the caller's deadline.
        """
        list(self.channel.unary_stream(STREAM)(b"x", timeout=7))
        remaining = self.runtime.calls[0][2]
        self.assertTrue(remaining is not None and 0 < remaining <= 7.1, remaining)

    def test_stream_counted(self):
        """
        A streamed call is counted under its service and method, with the
        runtime's status code.
        """
        list(self.channel.unary_stream(STREAM)(b"x", timeout=10))
        self.runtime.failures["StreamImages"] = (grpc.StatusCode.FAILED_PRECONDITION, "no")
        error = self.assertRaises(grpc.RpcError, list,
                                  self.channel.unary_stream(STREAM)(b"x", timeout=10))
        self.assertEqual(error.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(self.counted(), {
            ("runtime.v1.ImageService", "StreamImages", "OK"): 1,
            ("runtime.v1.ImageService", "StreamImages", "FAILED_PRECONDITION"): 1,
        })

    def test_made_up_paths_not_labels(self):
        """
        Method paths outside CRI, or not of the form
        C{/runtime.<package>.<Service>/<Method>}, are still relayed but
        counted as C{other}: a caller cannot make up metric labels.
        """
        for path in ("/evil.Service/Method", "/runtime.v1.ImageService/A/B"):
            self.assertEqual(self.channel.unary_unary(path)(b"x", timeout=10), b"x")
        self.assertEqual(self.counted(), {("other", "other", "OK"): 2})
