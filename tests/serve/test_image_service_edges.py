"""
Edge cases of L{cri_shim.serve.image_service} found by mutation testing (make
mutate): the rewrites metric, the runtime's paths and default deadline, what
kubelet is told when the shim fails or refuses, a runtime error on a pull
that was not moved, a registry found down during a pull, what is logged at
which level, and which runtime errors mean a registry was unreachable.
"""

import threading

import attr
import grpc
from twisted.internet.defer import CancelledError
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.metrics import Metrics
from cri_shim.model import config
from cri_shim.serve import image_service, methods
from cri_shim.testing import registry_config
from tests.serve.test_image_service import ShimTestMixin


class ImageServiceEdgeTests(ShimTestMixin, SynchronousTestCase):
    """
    The shim's ImageService handlers in front of a L{cri_shim.testing.FakeRuntime}.
    """

    lookup_error = None

    def setUp(self):
        self.metrics = Metrics()
        self.patch(image_service, "Metrics", lambda: self.metrics)
        ShimTestMixin.setUp(self)

    def lookup(self, *args):
        if self.lookup_error is not None:
            raise self.lookup_error
        return ShimTestMixin.lookup(self, *args)

    def counted(self):
        return {(labels["action"], labels["outcome"], labels["registry"]): value
                for _, labels, value in self.metrics.rewrites.samples()}

    def test_rewrites_counted(self):
        """
        Each decision is counted by call, outcome (its source, or C{cache}
        when a cached decision served it, C{local} for a lookup of local
        names only) and registry; a pull retried on the next registry counts
        that registry's lookup, not a cache hit.
        """
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000"]
        self.holders["docker.io/library/nginx:2"] = ["sealos.hub:5000", "mirror.example"]
        self.runtime.failures["sealos.hub:5000/library/nginx:2"] = (
            grpc.StatusCode.NOT_FOUND, "manifest unknown")
        self.pull("nginx:1")
        self.pull("nginx:1")
        self.pull("nginx:2")
        self.pull("mirror.example/team/app:2")
        self.status("quay.io/x/y:1")
        self.status("nginx:1")
        self.client.RemoveImage(self.api.RemoveImageRequest(
            image=self.api.ImageSpec(image="quay.io/x/y:1")), timeout=10)
        self.assertEqual(self.counted(), {
            ("PullImage", "probe", "sealos.hub:5000"): 1,
            ("PullImage", "cache", "sealos.hub:5000"): 1,
            ("PullImage", "probe", "mirror.example"): 1,
            ("PullImage", "configured", "mirror.example"): 1,
            ("ImageStatus", "local", "-"): 1,
            ("ImageStatus", "cache", "-"): 1,
            ("RemoveImage", "local", "-"): 1,
        })

    def test_runtime_paths_and_default_deadline(self):
        """
        The runtime is called on its own ImageService paths; a call without
        a deadline gets the configured timeout (15 minutes by default).
        """
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000"]
        self.client.PullImage(self.api.PullImageRequest(image=self.api.ImageSpec(image="nginx:1")))
        self.client.ImageStatus(self.api.ImageStatusRequest(
            image=self.api.ImageSpec(image="quay.io/x/y:1")))
        self.client.RemoveImage(self.api.RemoveImageRequest(
            image=self.api.ImageSpec(image="quay.io/x/y:1")))
        self.assertEqual({path for path, _, _, _ in self.runtime.calls},
                         {methods.path(self.package, "ImageService", name)
                          for name in ("PullImage", "ImageStatus", "RemoveImage")})
        for _, _, remaining, _ in self.runtime.calls[:2]:
            # (the grpc-timeout header rounds up to whole units)
            self.assertTrue(14 * 60 < remaining <= 15 * 60 + 1, remaining)

    def test_shim_failures_told(self):
        """
        A fault inside the shim answers INTERNAL pointing at the shim's log
        (where it is logged); a lookup cancelled with the call answers
        CANCELLED.
        """
        self.lookup_error = RuntimeError("bug")
        error = self.assertRaises(grpc.RpcError, self.pull, "nginx:1")
        self.assertEqual((error.code(), error.details()),
                         (grpc.StatusCode.INTERNAL,
                          "image-cri-shim internal error; see the shim's log"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.lookup_error = CancelledError()
        error = self.assertRaises(grpc.RpcError, self.pull, "nginx:1")
        self.assertEqual((error.code(), error.details()),
                         (grpc.StatusCode.CANCELLED, "cancelled by the caller"))

    def test_garbage_told(self):
        """
        A request that does not parse is refused naming the message type.
        """
        error = self.assertRaises(grpc.RpcError, self.raw("ImageService", "ImageStatus"),
                                  b"\xff\xff\xff\xff", timeout=10)
        self.assertTrue(error.details().startswith("cannot parse ImageStatusRequest: "),
                        error.details())

    def test_refusals_told(self):
        """
        With C{allowUpstream: false}, the refusal names the image and the
        registries asked, or says that none may hold it.
        """
        registries = self.holder.current.config.registries
        self.holder.publish(config.Config(registries=registries, allow_upstream=False))
        error = self.assertRaises(grpc.RpcError, self.pull, "quay.io/a/b:1")
        self.holder.publish(config.Config(
            registries=(registry_config("https://hub.example", mirror_of=["docker.io"]),),
            allow_upstream=False))
        second = self.assertRaises(grpc.RpcError, self.pull, "quay.io/a/b:1")
        self.assertEqual([error.details(), second.details()], [
            "image quay.io/a/b:1 is not in any configured registry (asked: sealos.hub:5000, "
            "mirror.example, open.example); pulling from its own registry is off "
            "(allowUpstream: false)",
            "image quay.io/a/b:1 is not in any configured registry (asked: none of them may "
            "hold it (mirrorOf)); pulling from its own registry is off (allowUpstream: false)"])

    def test_runtime_error_not_moved(self):
        """
        A pull that was not moved and fails in the runtime returns the
        runtime's error unchanged, with no other registry tried.
        """
        self.runtime.failures["quay.io/a/b:1"] = (grpc.StatusCode.NOT_FOUND, "no such image")
        error = self.assertRaises(grpc.RpcError, self.pull, "quay.io/a/b:1")
        self.assertEqual((error.code(), error.details()),
                         (grpc.StatusCode.NOT_FOUND, "no such image"))
        self.assertEqual(len(self.resolved), 1)

    def test_not_moved_byte_for_byte(self):
        """
        A pull that is not moved reaches the runtime byte for byte, even
        with its fields in an order protobuf would not write them.
        """
        auth = self.api.PullImageRequest(auth=self.api.AuthConfig(username="kubelet"))
        image = self.api.PullImageRequest(image=self.api.ImageSpec(image="quay.io/a/b:1"))
        body = auth.SerializeToString() + image.SerializeToString()
        self.raw("ImageService", "PullImage")(body, timeout=10)
        self.assertEqual(self.runtime_calls("PullImage")[0][1], body)

    def test_unreachable_reason_cut(self):
        """
        The reason reported for a registry a pull could not reach quotes the
        runtime's error, cut to 200 characters.
        """
        details = "dial tcp: connection refused " + "x" * 300
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000", "mirror.example"]
        self.runtime.failures["sealos.hub:5000/library/nginx:1"] = (
            grpc.StatusCode.UNKNOWN, details)
        self.pull("nginx:1")
        self.assertEqual(self.unreachable, [("sealos.hub:5000", "pull failed: " + details[:200])])

    def test_registry_found_down_during_pull(self):
        """
        A pull stalled on a registry that the health checker finds down
        meanwhile is abandoned and retried on the next registry holding the
        image, within the same call.
        """
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000", "mirror.example"]
        self.runtime.delays["sealos.hub:5000/library/nginx:1"] = 3.0
        pulled = []
        puller = threading.Thread(target=lambda: pulled.append(self.pull("nginx:1")))
        puller.start()
        self.assertTrue(self.runtime.arrived.wait(10))
        self.holder.publish_down({"sealos.hub:5000"})
        puller.join(10)
        self.assertEqual(len(pulled), 1)
        self.assertEqual([self.api.PullImageRequest.FromString(raw).image.image
                          for _, raw, _, _ in self.runtime_calls("PullImage")],
                         ["sealos.hub:5000/library/nginx:1", "mirror.example/library/nginx:1"])

    def test_slow_pull_kept(self):
        """
        A pull that takes longer than the down-check interval, from a
        registry nobody found down, is left to finish there.
        """
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000", "mirror.example"]
        self.runtime.delays["sealos.hub:5000/library/nginx:1"] = (
            image_service._DOWN_CHECK_INTERVAL * 1.5)
        self.pull("nginx:1")
        self.assertEqual(len(self.runtime_calls("PullImage")), 1)

    def test_only_holder_found_down(self):
        """
        When the registry found down during the pull was the only one
        holding the image, kubelet is told so, with UNAVAILABLE.
        """
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000"]
        self.runtime.delays["sealos.hub:5000/library/nginx:1"] = 3.0
        errors = []

        def pull():
            try:
                self.pull("nginx:1")
            except grpc.RpcError as error:
                errors.append(error)

        puller = threading.Thread(target=pull)
        puller.start()
        self.assertTrue(self.runtime.arrived.wait(10))
        self.holder.publish_down({"sealos.hub:5000"})
        puller.join(10)
        self.assertEqual([(error.code(), error.details()) for error in errors],
                         [(grpc.StatusCode.UNAVAILABLE,
                           "registry sealos.hub:5000 was found down during the pull")])

    def decisions_logged(self, events):
        return [(event["log_level"], event["action"], event["original"], event["result"],
                 event["registry"]) for event in events if "action" in event]

    def test_logged(self):
        """
        Pulls are logged at info with their outcome; the local lookups of
        ImageStatus and RemoveImage only with C{debug: true}, at debug.
        """
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000"]
        with capturedLogs() as events:
            self.pull("nginx:1")
            self.pull("quay.io/a/b:1")
            self.status("nginx:1")
        self.holder.publish(attr.evolve(self.holder.current.config, debug=True))
        self.runtime.images["quay.io/a/b:1"] = "sha256:" + "5" * 64
        with capturedLogs() as debug_events:
            self.status("quay.io/a/b:1")
            self.status("quay.io/a/b:2")
        self.assertEqual(self.decisions_logged(events), [
            (LogLevel.info, "PullImage", "nginx:1", "sealos.hub:5000/library/nginx:1",
             "sealos.hub:5000"),
            (LogLevel.info, "PullImage", "quay.io/a/b:1", "quay.io/a/b:1", "-")])
        self.assertEqual(formatEvent([e for e in events if "action" in e][0]),
                         "PullImage nginx:1 -> sealos.hub:5000/library/nginx:1 "
                         "(registry=sealos.hub:5000, cache_hit=False, source=probe)")
        self.assertEqual(self.decisions_logged(debug_events), [
            (LogLevel.debug, "ImageStatus", "quay.io/a/b:1", "quay.io/a/b:1", "-"),
            (LogLevel.debug, "ImageStatus", "quay.io/a/b:2", "(not present)", "-")])


class UnreachableTests(SynchronousTestCase):
    """
    Which runtime pull errors say the registry could not be reached.
    """

    def test_network_errors(self):
        """
        containerd's and CRI-O's wording of Go's network errors counts;
        an answer from the registry does not.
        """
        reached = [
            'dial tcp 10.0.0.1:5000: connect: connection refused',
            'dial tcp 10.0.0.1:5000: connect: no route to host',
            'dial tcp 10.0.0.1:5000: i/o timeout',
            'read tcp 10.0.0.2:4000->10.0.0.1:5000: read: connection reset by peer',
            'net/http: TLS handshake timeout',
            'dial tcp 10.0.0.1:5000: connect: network is unreachable',
            'dial tcp: lookup sealos.hub on 127.0.0.53:53: no such host',
            'dial tcp: lookup sealos.hub on 127.0.0.53:53: server misbehaving',
        ]
        answered = ['manifest unknown', 'unexpected status: 401 Unauthorized']
        self.assertEqual([image_service._unreachable("failed to pull: " + details)
                          for details in reached + answered],
                         [True] * len(reached) + [False] * len(answered))
