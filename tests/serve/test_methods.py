# -*- test-case-name: tests.serve.test_methods -*-
"""
Tests for L{cri_shim.serve.methods} and how L{cri_shim.serve.passthrough}
relays by it: the table knows every method upstream defines and whether it
streams (held against the k8s.io/cri-api modules C{make tools} leaves in the
Go module cache, read by L{dev.cri_api}), and every unary method gets the
unary relay: a deadline when the caller set none, and a latency sample.
"""

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from cri_shim.metrics import Metrics
from cri_shim.serve import methods
from cri_shim.serve.passthrough import ProxyHandler
from dev import cri_api
from tests.serve.test_image_service import ShimTestMixin


class UpstreamTableTests(SynchronousTestCase):
    """
    The method table against upstream's services.
    """

    def assertTableMatches(self, package):
        found = cri_api.newest(package)
        if found is None:
            raise SkipTest("no k8s.io/cri-api module shipping {} linked from {} (make tools)"
                           .format(package, cri_api.LINKS))
        argv = cri_api.protoc_argv()
        if argv is None:
            raise SkipTest("neither grpc_tools nor protoc is available")
        version, proto = found
        upstream = cri_api.kinds(cri_api.descriptor(proto, argv))
        prefix = "/{}.".format(package)
        ours = {p: "unary" for p in methods.UNARY if p.startswith(prefix)}
        ours.update({p: "server_streaming" for p in methods.STREAMING if p.startswith(prefix)})
        self.assertEqual(ours, upstream, "methods.METHODS[{!r}] differs from k8s.io/cri-api {}"
                         .format(package, version))

    def test_v1(self):
        """
        Every runtime.v1 method of the newest k8s.io/cri-api is in the table,
        unary ones as unary and server-streaming ones as streaming, and the
        table has nothing more.
        """
        self.assertTableMatches("runtime.v1")

    def test_v1alpha2(self):
        """
        runtime.v1alpha2's table is k8s.io/cri-api v0.25.16's, its last
        release: unary methods only.
        """
        self.assertTableMatches("runtime.v1alpha2")

    def test_kinds_apart(self):
        """
        No path is both unary and streaming.
        """
        self.assertEqual(methods.UNARY & methods.STREAMING, frozenset())


class _Context:
    def time_remaining(self):
        return None

    def invocation_metadata(self):
        return ()

    def code(self):
        return None

    def add_callback(self, callback):
        pass


class _Responses(list):
    def cancel(self):
        pass


class _Details:
    invocation_metadata = ()

    def __init__(self, method):
        self.method = method


class _Upstream:
    """
    Records each unary call's path and timeout, and each streamed path.
    """

    def __init__(self):
        self.calls = []
        self.streamed = []

    def unary(self, path):
        def call(request, timeout, metadata):
            self.calls.append((path, timeout))
            return request
        return call

    def stream(self, path):
        def call(requests, timeout, metadata):
            self.streamed.append(path)
            return _Responses([b"one", b"two"])
        return call


class UnaryRelayTests(SynchronousTestCase):
    """
    The relay serves each unary method of the table as a unary call.
    """

    def test_every_unary_method(self):
        """
        Every unary path, the newest ones (C{CheckpointPod}, C{RestorePod})
        among them, gets a unary handler; called without a deadline, it
        reaches the runtime with the configured timeout and leaves a latency
        sample under its own name.
        """
        upstream, metrics = _Upstream(), Metrics()
        handler = ProxyHandler(upstream, {}, lambda: 42.0, metrics)
        for path in sorted(methods.UNARY):
            rpc = handler.service(_Details(path))
            self.assertIsNotNone(rpc.unary_unary, path)
            self.assertEqual(rpc.unary_unary(b"body", _Context()), b"body")
        self.assertEqual(upstream.calls, [(path, 42.0) for path in sorted(methods.UNARY)])
        self.assertEqual(upstream.streamed, [])
        text = metrics.render().decode()
        for name in ("CheckpointPod", "RestorePod", "UpdatePodSandboxResources"):
            self.assertIn('image_cri_shim_call_duration_seconds_count{{service='
                          '"runtime.v1.RuntimeService",method="{}"}} 1'.format(name), text)

    def test_streaming_methods(self):
        """
        Every server-streaming method (C{StreamImages}, C{StreamContainers}
        and the rest) is relayed as a stream and counted under its own name.
        """
        upstream, metrics = _Upstream(), Metrics()
        handler = ProxyHandler(upstream, {}, lambda: 42.0, metrics)
        for path in sorted(methods.STREAMING):
            rpc = handler.service(_Details(path))
            self.assertIsNone(rpc.unary_unary, path)
            self.assertEqual(list(rpc.stream_stream(iter(()), _Context())), [b"one", b"two"])
        self.assertEqual(upstream.streamed, sorted(methods.STREAMING))
        text = metrics.render().decode()
        self.assertNotIn('service="other"', text)
        for path in methods.STREAMING:
            service, method = path[1:].split("/")
            self.assertIn('image_cri_shim_calls_total{{service="{}",method="{}",code="OK"}} 1'
                          .format(service, method), text)


class CheckpointOverGrpcTests(ShimTestMixin, SynchronousTestCase):
    """
    Over real gRPC, a pod checkpoint without a deadline reaches the runtime
    with the configured timeout.
    """

    def test_default_deadline(self):
        """
        C{CheckpointPod} and C{RestorePod}, called without a deadline, reach
        the runtime byte for byte with the configured timeout.
        """
        for name in ("CheckpointPod", "RestorePod"):
            self.assertEqual(self.raw("RuntimeService", name)(b"\x0a\x03pod"), b"\x0a\x03pod")
        for (path, body, remaining, _), name in zip(self.runtime.calls,
                                                    ("CheckpointPod", "RestorePod")):
            self.assertTrue(path.endswith("/" + name), path)
            self.assertEqual(body, b"\x0a\x03pod")
            # (the grpc-timeout header rounds up to whole units)
            self.assertTrue(remaining is not None and 14 * 60 < remaining <= 15 * 60 + 1,
                            remaining)
