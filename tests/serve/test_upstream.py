"""
Tests for L{cri_shim.serve.upstream}, written from the edge cases mutation
testing (make mutate) found untested: the runtime check, the multicallables
kept per path, and which headers are relayed each way.
"""

import os
import shutil
import tempfile

import grpc
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.serve import upstream
from cri_shim.serve.upstream import Abort, Upstream, thd_metadata, thd_timeout
from cri_shim.testing import FakeRuntime

#: Headers gRPC manages itself, as a caller's metadata or a runtime's
#: trailers might carry them, and one of the caller's own.
MANAGED = [("user-agent", "kubelet"), ("content-type", "application/grpc"), ("te", "trailers"),
           ("host", "node"), ("authority", "node"), (":path", "/x"), ("grpc-timeout", "1S"),
           ("grpc-accept-encoding", "gzip")]


class FakeContext:
    """
    The parts of a C{grpc.ServicerContext} the helpers read.
    """

    def __init__(self, remaining=None, metadata=()):
        self._remaining = remaining
        self._metadata = metadata

    def time_remaining(self):
        return self._remaining

    def invocation_metadata(self):
        return self._metadata


class FakeRpcError(grpc.RpcError):
    """
    A runtime's error as a client call raises it.
    """

    def __init__(self, code, details, trailing):
        self._code, self._details, self._trailing = code, details, trailing

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing


class HelperTests(SynchronousTestCase):
    """
    Tests for L{thd_timeout}, L{thd_metadata} and L{Abort.from_rpc_error}.
    """

    def test_timeout(self):
        """
        The caller's deadline is kept; without one, the default applies.
        """
        self.assertEqual(thd_timeout(FakeContext(7.5), 60.0), 7.5)
        self.assertEqual(thd_timeout(FakeContext(None), 60.0), 60.0)

    def test_metadata(self):
        """
        The caller's own metadata goes on; headers gRPC manages do not.
        """
        context = FakeContext(metadata=MANAGED + [("x-trace", "abc")])
        self.assertEqual(thd_metadata(context), (("x-trace", "abc"),))

    def test_trailing(self):
        """
        The runtime's trailing metadata comes back without the headers gRPC
        manages, its status and message headers included (gRPC sets those
        from the code and details); missing details become empty.
        """
        managed = [(key, value) for key, value in MANAGED if not key.startswith("grpc-")]
        error = FakeRpcError(grpc.StatusCode.NOT_FOUND, None,
                             managed + [("grpc-status", "5"), ("grpc-message", "gone"),
                                        ("x-runtime", "failed")])
        abort = Abort.from_rpc_error(error)
        self.assertEqual((abort.code, abort.details, abort.trailing),
                         (grpc.StatusCode.NOT_FOUND, "", (("x-runtime", "failed"),)))


class UpstreamTests(SynchronousTestCase):
    """
    Tests for L{Upstream} against a L{FakeRuntime}.
    """

    def setUp(self):
        folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, folder, True)
        self.path = os.path.join(folder, "runtime.sock")
        self.runtime = FakeRuntime(self.path)
        self.addCleanup(self.runtime.stop)
        self.upstream = Upstream(self.path)
        self.addCleanup(self.upstream.close)

    def test_socket_path(self):
        """
        The upstream names the runtime socket it was made for.
        """
        self.assertEqual(self.upstream.socket_path, self.path)

    def test_runtime_answers(self):
        """
        The runtime answers when it answers an empty C{Version} request, even
        with an error; not when it is unavailable or runs out of time.
        """
        self.assertTrue(self.upstream.runtime_answers(10))
        self.assertEqual(self.runtime.calls[-1][:2], ("/runtime.v1.RuntimeService/Version", b""))
        self.runtime.failures["Version"] = (grpc.StatusCode.UNIMPLEMENTED, "old runtime")
        self.assertTrue(self.upstream.runtime_answers(10))
        for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            self.runtime.failures["Version"] = (code, "not now")
            self.assertFalse(self.upstream.runtime_answers(10), code)

    def test_multicallables_kept(self):
        """
        One multicallable per method path, made on first use and kept; of
        streaming paths (callers may make up endless ones), only the first
        L{upstream._MAX_KEPT}.
        """
        self.assertIs(self.upstream.unary("/a.B/C"), self.upstream.unary("/a.B/C"))
        paths = ["/a.B/M{}".format(i) for i in range(upstream._MAX_KEPT + 1)]
        for path in paths:
            self.upstream.stream(path)
        self.assertIs(self.upstream.stream(paths[0]), self.upstream.stream(paths[0]))
        self.assertIsNot(self.upstream.stream(paths[-1]), self.upstream.stream(paths[-1]))
