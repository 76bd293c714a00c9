"""
Tests for L{cri_shim.serve.image_service} and L{cri_shim.serve.passthrough} over real
gRPC: a client calls the shim's handlers on a UNIX socket, and they call a
recording runtime (L{cri_shim.testing.FakeRuntime}) on another.
"""

import contextlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor

import attr
import grpc
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, rewrite
from cri_shim.model.selector import Pod
from cri_shim.serve import methods
from dev.cri_client import CRIClient
from cri_shim.serve.grpc_server import SERVER_OPTIONS
from cri_shim.serve.image_service import ImageService
from cri_shim.serve.passthrough import ProxyHandler
from cri_shim.serve.views import NameView
from cri_shim.snapshot import SnapshotHolder
from cri_shim.testing import FakeRuntime, registry_config
from cri_shim.serve.upstream import CHANNEL_OPTIONS, Upstream

OFFLINE = registry_config("http://sealos.hub:5000", "admin", "off:line:pw", priority=1000,
                          offline=True)
MIRROR = registry_config("https://mirror.example", "mirror-user", "mirror-pw", priority=500)
OPEN = registry_config("https://open.example", priority=100)

# An unknown field (number 9999, length-delimited "future") as a newer
# kubelet might send it.
UNKNOWN_FIELD = b"\xfa\xf0\x04\x06future"


class ShimTestMixin:
    """
    A shim (ImageService handlers + relay) in front of a FakeRuntime, with a
    resolver stand-in that answers from C{self.holders}: image -> registry
    names holding it.
    """

    package = "runtime.v1"
    runtime_type = FakeRuntime

    def make_store(self, folder):
        """
        :return: the names store to serve with (and the ListImages and
            CreateContainer handlers with it), or C{None} for none.
        """
        return None

    def setUp(self):
        folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, folder, True)
        self.folder = folder
        self.runtime = self.runtime_type(os.path.join(folder, "runtime.sock"), self.package)
        self.addCleanup(self.runtime.stop)
        self.clock = Clock()
        self.holder = SnapshotHolder(self.make_config(), self.clock.seconds)
        self.holders = {}
        self.resolved = []
        self.unreachable = []
        self.events = []
        self.pulls = []
        upstream = Upstream(os.path.join(folder, "runtime.sock"))
        self.addCleanup(upstream.close)
        self.store = self.make_store(folder)
        rewriting = {}
        for package in methods.API:
            images = ImageService(
                package, upstream, self.holder, self.lookup,
                lambda name, reason: self.unreachable.append((name, reason)), store=self.store,
                report_event=self.events.append, track_pull=self.track_pull)
            rewriting.update(images.handlers())
            if self.store is not None:
                rewriting.update(NameView(package, upstream, self.holder, self.store,
                                          images.thd_local_name).handlers())
        handler = ProxyHandler(upstream, rewriting, lambda: self.holder.current.config.timeout)
        self.server = grpc.server(ThreadPoolExecutor(8), handlers=[handler],
                                  options=SERVER_OPTIONS)
        socket_path = os.path.join(folder, "shim.sock")
        self.server.add_insecure_port("unix:" + socket_path)
        self.server.start()
        self.addCleanup(lambda: self.server.stop(None).wait())
        self.client = CRIClient(socket_path, self.package)
        self.addCleanup(self.client.close)
        self.channel = grpc.insecure_channel("unix:" + socket_path, options=CHANNEL_OPTIONS)
        self.addCleanup(self.channel.close)
        self.api = self.client.api

    @contextlib.contextmanager
    def track_pull(self, name):
        self.pulls.append(("started", name))
        try:
            yield
        finally:
            self.pulls.append(("ended", name))

    def make_config(self):
        registries = sorted([OFFLINE, MIRROR, OPEN],
                            key=lambda r: (-r.priority, not r.offline, r.name))
        return config.Config(registries=tuple(registries))

    def lookup(self, context, snapshot, ref, exclude, pod=None):
        """
        The resolver's lookup contract, answered from C{self.holders}.
        """
        self.resolved.append((str(ref), frozenset(exclude)))
        holding = self.holders.get(str(ref), ())
        found = rewrite.candidates(snapshot.config, ref, exclude, snapshot.down, pod)
        for candidate in found:
            if candidate.registry.name in holding:
                decision = rewrite.Decision(ref, candidate.target, candidate.registry,
                                            rewrite.PROBE)
                snapshot.cache.put(rewrite.cache_key(ref, rewrite.scope(snapshot.config, ref, pod)),
                                   decision, 60)
                return decision
        return rewrite.Decision(ref, None, None, rewrite.NOBODY,
                                tuple(c.registry.name for c in found))

    def runtime_calls(self, method):
        return [call for call in self.runtime.calls if call[0].endswith("/" + method)]

    def raw(self, service, method):
        return self.channel.unary_unary(methods.path(self.package, service, method))

    def pull(self, image, **auth):
        request = self.api.PullImageRequest(image=self.api.ImageSpec(image=image))
        if auth:
            request.auth.CopyFrom(self.api.AuthConfig(**auth))
        return self.client.PullImage(request, timeout=10)

    def status(self, image):
        return self.client.ImageStatus(
            self.api.ImageStatusRequest(image=self.api.ImageSpec(image=image)), timeout=10)


class PullImageTestsMixin(ShimTestMixin):
    def test_rewrite_with_registry_credentials(self):
        """
        A pull moved to a registry carries that registry's login, with
        server_address set to it, instead of what kubelet sent.
        """
        self.holders["docker.io/library/nginx:latest"] = ["sealos.hub:5000"]
        response = self.pull("nginx", username="kubelet", password="kubelet-pw")
        self.assertTrue(response.image_ref.startswith("sha256:"))
        [(_, raw, _, _)] = self.runtime_calls("PullImage")
        sent = self.api.PullImageRequest.FromString(raw)
        self.assertEqual(sent.image.image, "sealos.hub:5000/library/nginx:latest")
        self.assertEqual((sent.auth.username, sent.auth.password, sent.auth.server_address),
                         ("admin", "off:line:pw", "http://sealos.hub:5000"))

    def test_moved_to_open_registry_drops_kubelet_auth(self):
        """
        Moved to a registry without a login, the pull carries no credentials
        at all: kubelet's belong to another registry.
        """
        self.holders["docker.io/library/nginx:1"] = ["open.example"]
        self.pull("nginx:1", username="kubelet", password="kubelet-pw", auth="a3ViZWxldA==")
        [(_, raw, _, _)] = self.runtime_calls("PullImage")
        sent = self.api.PullImageRequest.FromString(raw)
        self.assertEqual(sent.image.image, "open.example/library/nginx:1")
        self.assertFalse(sent.HasField("auth"))

    def test_not_moved_unchanged(self):
        """
        An image no registry holds is pulled as asked, byte for byte, with
        kubelet's credentials.
        """
        request = self.api.PullImageRequest(
            image=self.api.ImageSpec(image="quay.io/a/b:1"),
            auth=self.api.AuthConfig(username="kubelet", password="kubelet-pw"))
        body = request.SerializeToString() + UNKNOWN_FIELD
        self.raw("ImageService", "PullImage")(body, timeout=10)
        [(_, raw, _, _)] = self.runtime_calls("PullImage")
        self.assertEqual(raw, body)

    def test_configured_registry_gets_its_login(self):
        """
        An image already naming a configured registry is not moved; it gets
        that registry's login when kubelet sent none, and keeps kubelet's
        otherwise.
        """
        self.pull("mirror.example/team/app:2")
        self.pull("mirror.example/team/app:3", username="pod-secret", password="x")
        first, second = [self.api.PullImageRequest.FromString(raw)
                         for _, raw, _, _ in self.runtime_calls("PullImage")]
        self.assertEqual((first.image.image, first.auth.username, first.auth.server_address),
                         ("mirror.example/team/app:2", "mirror-user", "https://mirror.example"))
        self.assertEqual(second.auth.username, "pod-secret")
        self.assertEqual(self.resolved, [])

    def test_unknown_fields_survive_rewrite(self):
        """
        Fields this shim does not know survive a rewrite.
        """
        self.holders["docker.io/library/nginx:latest"] = ["sealos.hub:5000"]
        request = self.api.PullImageRequest(image=self.api.ImageSpec(image="nginx"))
        self.raw("ImageService", "PullImage")(request.SerializeToString() + UNKNOWN_FIELD,
                                              timeout=10)
        [(_, raw, _, _)] = self.runtime_calls("PullImage")
        self.assertIn(UNKNOWN_FIELD, raw)
        self.assertEqual(self.api.PullImageRequest.FromString(raw).image.image,
                         "sealos.hub:5000/library/nginx:latest")

    def test_failover(self):
        """
        A pull that fails on the chosen registry is retried on the next one
        holding the image, within the same call.
        """
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000", "mirror.example"]
        self.runtime.failures["sealos.hub:5000/library/nginx:1"] = (
            grpc.StatusCode.UNKNOWN, "failed to resolve: connection refused")
        self.pull("nginx:1")
        pulled = [self.api.PullImageRequest.FromString(raw).image.image
                  for _, raw, _, _ in self.runtime_calls("PullImage")]
        self.assertEqual(pulled, ["sealos.hub:5000/library/nginx:1",
                                  "mirror.example/library/nginx:1"])
        self.assertEqual(self.resolved[-1][1], frozenset(["sealos.hub:5000"]))
        self.assertEqual(self.holder.current.cache.get("docker.io/library/nginx:1").registry,
                         MIRROR)

    def test_failed_pull_forgets_cached_decision(self):
        """
        A pull that fails on the only registry holding the image drops the
        cached rewrite to it, so that the next pull looks the image up again
        instead of going back to that registry until the entry expires.
        """
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000"]
        self.pull("nginx:1")
        key = "docker.io/library/nginx:1"
        self.assertEqual(self.holder.current.cache.get(key).registry, OFFLINE)
        self.runtime.failures["sealos.hub:5000/library/nginx:1"] = (
            grpc.StatusCode.UNKNOWN, "failed to pull and unpack image: unexpected EOF")
        error = self.assertRaises(grpc.RpcError, self.pull, "nginx:1")
        self.assertEqual(error.details(), "failed to pull and unpack image: unexpected EOF")
        self.assertIsNone(self.holder.current.cache.get(key))
        del self.runtime.failures["sealos.hub:5000/library/nginx:1"]
        self.pull("nginx:1")
        self.assertEqual(self.resolved, [(key, frozenset()),
                                         (key, frozenset(["sealos.hub:5000"])),
                                         (key, frozenset())])

    def test_last_error_returned(self):
        """
        When every holder fails, the last registry's error comes back
        unchanged.
        """
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000", "mirror.example"]
        self.runtime.failures["sealos.hub:5000/library/nginx:1"] = (
            grpc.StatusCode.UNKNOWN, "first")
        self.runtime.failures["mirror.example/library/nginx:1"] = (
            grpc.StatusCode.NOT_FOUND, "second")
        error = self.assertRaises(grpc.RpcError, self.pull, "nginx:1")
        self.assertEqual((error.code(), error.details()), (grpc.StatusCode.NOT_FOUND, "second"))

    def test_relayed_failure_logged(self):
        """
        A pull relayed unchanged that fails (a name no registry holds, or a
        name the shim cannot parse) is logged at info with the runtime's
        answer, debug off; kubelet's credentials are not.
        """
        for name in ("nosuchimage:1", "Not A Valid Name"):
            self.runtime.failures[name] = (grpc.StatusCode.NOT_FOUND, "pull access denied")
        with capturedLogs() as events:
            for name in ("nosuchimage:1", "Not A Valid Name"):
                self.assertRaises(grpc.RpcError, self.pull, name, username="kubelet",
                                  password="kubelet-pw")
        logged = [(event["log_level"], event["original"], event["code"], event["details"])
                  for event in events if "original" in event]
        self.assertEqual(logged, [
            (LogLevel.info, name, "NOT_FOUND", "pull access denied")
            for name in ("nosuchimage:1", "Not A Valid Name")])
        self.assertNotIn("kubelet-pw", repr(events))

    def test_cached_decision(self):
        """
        A second pull of the same image uses the cached decision.
        """
        self.holders["docker.io/library/nginx:latest"] = ["sealos.hub:5000"]
        self.pull("nginx:latest")
        self.pull("docker.io/library/nginx")
        self.assertEqual(len(self.resolved), 1)
        self.assertEqual(len(self.runtime_calls("PullImage")), 2)

    def test_cached_rewrite_to_down_registry_bypassed(self):
        """
        A cached rewrite to a registry found down since is looked up again.
        """
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000"]
        self.pull("nginx:1")
        self.holder.publish_down({"sealos.hub:5000"})
        self.holders["docker.io/library/nginx:1"] = ["mirror.example"]
        self.pull("nginx:1")
        self.assertEqual(len(self.resolved), 2)
        self.assertEqual(self.api.PullImageRequest.FromString(
            self.runtime_calls("PullImage")[-1][1]).image.image, "mirror.example/library/nginx:1")

    def test_unreachable_pull_reported(self):
        """
        A pull failing because the registry could not be reached reports it
        (passive health); other failures do not.
        """
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000", "mirror.example",
                                                     "open.example"]
        self.runtime.failures["sealos.hub:5000/library/nginx:1"] = (
            grpc.StatusCode.UNKNOWN, 'failed to do request: Head "http://sealos.hub:5000/v2/": '
            'dial tcp 10.0.0.1:5000: connect: connection refused')
        self.runtime.failures["mirror.example/library/nginx:1"] = (
            grpc.StatusCode.NOT_FOUND, "manifest unknown")
        self.pull("nginx:1")
        self.assertEqual([name for name, _ in self.unreachable], ["sealos.hub:5000"])

    def test_pulls_tracked(self):
        """
        Each pull from a registry is told to the health checker when it
        starts and when it ends, failed or not; a pull moved nowhere names no
        registry (L{pull_tracker} tells no one of it).
        """
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000", "mirror.example"]
        self.runtime.failures["sealos.hub:5000/library/nginx:1"] = (
            grpc.StatusCode.NOT_FOUND, "manifest unknown")
        self.pull("nginx:1")
        self.pull("busybox:1")
        self.assertEqual(self.pulls, [
            ("started", "sealos.hub:5000"), ("ended", "sealos.hub:5000"),
            ("started", "mirror.example"), ("ended", "mirror.example"), ("started", None),
            ("ended", None)])

    def test_allow_upstream_off(self):
        """
        With allowUpstream off, an image no registry holds is refused with
        NOT_FOUND naming it and the registries asked; the runtime is never
        asked to pull it.
        """
        self.holder.publish(config.Config(registries=self.holder.current.config.registries,
                                          allow_upstream=False))
        error = self.assertRaises(grpc.RpcError, self.pull, "quay.io/a/b:1")
        self.assertEqual(error.code(), grpc.StatusCode.NOT_FOUND)
        self.assertIn("quay.io/a/b:1", error.details())
        self.assertIn("sealos.hub:5000, mirror.example, open.example", error.details())
        self.assertEqual(self.runtime_calls("PullImage"), [])
        self.pull("mirror.example/team/app:2")
        self.assertEqual(len(self.runtime_calls("PullImage")), 1)

    def pull_for(self, image, namespace, labels=None):
        """
        Pull C{image} as kubelet does for a pod in C{namespace}.
        """
        request = self.api.PullImageRequest(image=self.api.ImageSpec(image=image))
        request.sandbox_config.metadata.name = "web-1"
        request.sandbox_config.metadata.namespace = namespace
        request.sandbox_config.metadata.uid = "uid-1"
        request.sandbox_config.labels.update(labels or {})
        return self.client.PullImage(request, timeout=10)

    def test_pod_events(self):
        """
        A pull for a pod that was moved, failed over or refused hands one
        event on that pod to C{report_event}; pulls without a pod, or not
        moved, hand none.
        """
        pod = Pod("web-1", "team-a", "uid-1", {"app": "web"})
        self.holders["docker.io/library/nginx:1"] = ["sealos.hub:5000", "mirror.example"]
        self.pull("nginx:1")
        self.pull_for("quay.io/nobody/has:1", "team-a")
        self.assertEqual(self.events, [])
        self.pull_for("nginx:1", "team-a", {"app": "web"})
        self.runtime.failures["sealos.hub:5000/library/nginx:1"] = (
            grpc.StatusCode.UNKNOWN, "failed to resolve: dial tcp: connect: connection refused")
        self.pull_for("nginx:1", "team-a", {"app": "web"})
        self.holder.publish(config.Config(registries=self.holder.current.config.registries,
                                          allow_upstream=False))
        self.assertRaises(grpc.RpcError, self.pull_for, "quay.io/a/b:1", "team-a",
                          {"app": "web"})
        self.assertEqual([(event.pod, event.reason, event.message) for event in self.events], [
            (pod, "ImageRewritten", "pulled nginx:1 from sealos.hub:5000 as "
             "sealos.hub:5000/library/nginx:1"),
            (pod, "RegistryFailover", "pulled nginx:1 from mirror.example as "
             "mirror.example/library/nginx:1 (sealos.hub:5000 pull failed: connection refused)"),
            (pod, "ImageRefused", "refused quay.io/a/b:1: no configured registry serving this "
             "pod has it (asked: sealos.hub:5000, mirror.example, open.example) and "
             "allowUpstream is false"),
        ])

    def test_routed_by_namespace(self):
        """
        A registry restricted to a namespace serves only pulls for pods
        there, with its own login; its decision is cached for them alone.
        """
        team = attr.evolve(MIRROR, namespaces=("team-a",))
        self.holder.publish(config.Config(registries=(OFFLINE, team, OPEN)))
        self.holders["docker.io/library/app:1"] = ["mirror.example", "open.example"]
        for pull in (lambda: self.pull_for("app:1", "team-a"),
                     lambda: self.pull_for("app:1", "team-b"),
                     lambda: self.pull("app:1"),
                     lambda: self.pull_for("app:1", "team-a")):
            pull()
        sent = [self.api.PullImageRequest.FromString(raw)
                for _, raw, _, _ in self.runtime_calls("PullImage")]
        self.assertEqual([(request.image.image, request.auth.username) for request in sent], [
            ("mirror.example/library/app:1", "mirror-user"),
            ("open.example/library/app:1", ""),
            ("open.example/library/app:1", ""),
            ("mirror.example/library/app:1", "mirror-user"),
        ])
        self.assertEqual(len(self.resolved), 2)

    def test_garbage(self):
        """
        Bytes that are not a PullImageRequest are refused cleanly.
        """
        error = self.assertRaises(grpc.RpcError, self.raw("ImageService", "PullImage"),
                                  b"\xff\xff\xff\xff", timeout=10)
        self.assertEqual(error.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("PullImageRequest", error.details())

    def test_invalid_name_relayed(self):
        """
        A name that is not a valid reference is relayed for the runtime to
        answer.
        """
        self.pull("Not A Valid Name")
        self.assertEqual(len(self.runtime_calls("PullImage")), 1)
        self.assertEqual(self.resolved, [])


class ImageStatusTestsMixin(ShimTestMixin):
    def test_warm_one_call(self):
        """
        With a cached rewrite, ImageStatus costs one runtime call.
        """
        self.holders["docker.io/library/nginx:latest"] = ["mirror.example"]
        self.pull("nginx:latest")
        del self.runtime.calls[:]
        response = self.status("nginx:latest")
        self.assertEqual(list(response.image.repo_tags), ["mirror.example/library/nginx:latest"])
        self.assertEqual(len(self.runtime.calls), 1)

    def test_cold_looks_up_local_names(self):
        """
        Without a cached rewrite, the name as asked is tried, then each
        registry's name, without asking any registry.
        """
        self.runtime.images["mirror.example/library/nginx:latest"] = "sha256:" + "1" * 64
        response = self.status("nginx:latest")
        self.assertEqual(response.image.id, "sha256:" + "1" * 64)
        asked = [self.api.ImageStatusRequest.FromString(raw).image.image
                 for _, raw, _, _ in self.runtime_calls("ImageStatus")]
        self.assertEqual(asked, ["nginx:latest", "sealos.hub:5000/library/nginx:latest",
                                 "mirror.example/library/nginx:latest"])
        self.assertEqual(self.resolved, [])

    def test_absent(self):
        """
        An image held under no name is reported absent.
        """
        self.assertFalse(self.status("nginx:9").HasField("image"))

    def test_original_found_first(self):
        """
        An image the runtime has under the name asked is answered as is.
        """
        self.runtime.images["nginx:1"] = "sha256:" + "2" * 64
        self.assertEqual(self.status("nginx:1").image.id, "sha256:" + "2" * 64)
        self.assertEqual(len(self.runtime.calls), 1)

    def test_image_id(self):
        """
        An image ID is relayed unchanged.
        """
        image_id = "sha256:" + "3" * 64
        self.status(image_id)
        [(_, raw, _, _)] = self.runtime.calls
        self.assertEqual(self.api.ImageStatusRequest.FromString(raw).image.image, image_id)

    def test_verbose_and_unknown_kept(self):
        """
        The rest of the request (verbose, unknown fields) is kept when the
        name is changed.
        """
        request = self.api.ImageStatusRequest(image=self.api.ImageSpec(image="nginx:2"),
                                              verbose=True)
        self.raw("ImageService", "ImageStatus")(request.SerializeToString() + UNKNOWN_FIELD,
                                                timeout=10)
        last = self.runtime_calls("ImageStatus")[-1][1]
        self.assertIn(UNKNOWN_FIELD, last)
        self.assertTrue(self.api.ImageStatusRequest.FromString(last).verbose)

    def test_remove_found_name(self):
        """
        RemoveImage removes the image under the name the runtime has it by.
        """
        self.runtime.images["sealos.hub:5000/library/nginx:latest"] = "sha256:" + "4" * 64
        self.client.RemoveImage(self.api.RemoveImageRequest(
            image=self.api.ImageSpec(image="nginx")), timeout=10)
        [(_, raw, _, _)] = self.runtime_calls("RemoveImage")
        self.assertEqual(self.api.RemoveImageRequest.FromString(raw).image.image,
                         "sealos.hub:5000/library/nginx:latest")
        self.assertEqual(self.runtime.images, {})

    def test_remove_absent_relayed(self):
        """
        RemoveImage of an image held under no name is relayed unchanged.
        """
        self.client.RemoveImage(self.api.RemoveImageRequest(
            image=self.api.ImageSpec(image="nginx:7")), timeout=10)
        [(_, raw, _, _)] = self.runtime_calls("RemoveImage")
        self.assertEqual(self.api.RemoveImageRequest.FromString(raw).image.image, "nginx:7")


class PassThroughTestsMixin(ShimTestMixin):
    def test_raw_bytes(self):
        """
        A relayed call reaches the runtime byte for byte, and its answer
        comes back byte for byte, never parsed.
        """
        body = b"\x0a\x02v9" + UNKNOWN_FIELD
        answer = self.raw("RuntimeService", "Version")(body, timeout=10)
        self.assertEqual(answer, body)
        self.assertEqual(self.runtime.calls[0][1], body)

    def test_deadline_and_metadata(self):
        """
        The caller's deadline and metadata are forwarded.
        """
        self.raw("RuntimeService", "Status")(b"", timeout=7,
                                             metadata=(("x-trace", "abc"),))
        _, _, remaining, metadata = self.runtime.calls[0]
        # (grpc computes the deadline on each side: allow for clock rounding)
        self.assertTrue(0 < remaining <= 7.1, remaining)
        self.assertEqual(metadata.get("x-trace"), "abc")

    def test_default_deadline(self):
        """
        A call without a deadline gets the configured timeout.
        """
        self.raw("RuntimeService", "Status")(b"")
        _, _, remaining, _ = self.runtime.calls[0]
        # (the grpc-timeout header rounds up to whole units)
        self.assertTrue(14 * 60 < remaining <= 15 * 60 + 1, remaining)

    def test_status_unchanged(self):
        """
        The runtime's status code, details and trailing metadata come back
        unchanged.
        """
        self.runtime.failures["ListContainers"] = (grpc.StatusCode.FAILED_PRECONDITION,
                                                   "not today")
        call = self.raw("RuntimeService", "ListContainers")
        error = self.assertRaises(grpc.RpcError, call, b"", timeout=10)
        self.assertEqual((error.code(), error.details()),
                         (grpc.StatusCode.FAILED_PRECONDITION, "not today"))
        self.assertIn(("x-runtime", "failed"), tuple(error.trailing_metadata()))

    def test_unknown_method_streams(self):
        """
        A server-streaming method (C{StreamImages}: in the table for
        runtime.v1, unknown to runtime.v1alpha2) is relayed by path with
        every message.
        """
        call = self.channel.unary_stream(methods.path(self.package, "ImageService",
                                                      "StreamImages"))
        self.assertEqual(list(call(b"x", timeout=10)), [b"one", b"two", b"three"])

    def test_message_limits(self):
        """
        Messages up to 16 MiB pass; larger ones are refused with
        RESOURCE_EXHAUSTED.
        """
        call = self.raw("RuntimeService", "ExecSync")
        big = b"\x0a" + b"x" * (15 * 1024 * 1024)
        self.assertEqual(len(call(big, timeout=30)), len(big))
        error = self.assertRaises(grpc.RpcError, call, b"x" * (17 * 1024 * 1024), timeout=30)
        self.assertEqual(error.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

    def test_runtime_down(self):
        """
        With the runtime gone, calls fail with UNAVAILABLE.
        """
        self.runtime.stop()
        call = self.raw("RuntimeService", "Version")
        error = self.assertRaises(grpc.RpcError, call, b"", timeout=10)
        self.assertEqual(error.code(), grpc.StatusCode.UNAVAILABLE)


class V1PullImageTests(PullImageTestsMixin, SynchronousTestCase):
    package = "runtime.v1"


class V1Alpha2PullImageTests(PullImageTestsMixin, SynchronousTestCase):
    package = "runtime.v1alpha2"


class V1ImageStatusTests(ImageStatusTestsMixin, SynchronousTestCase):
    package = "runtime.v1"


class V1Alpha2ImageStatusTests(ImageStatusTestsMixin, SynchronousTestCase):
    package = "runtime.v1alpha2"


class V1PassThroughTests(PassThroughTestsMixin, SynchronousTestCase):
    package = "runtime.v1"


class V1Alpha2PassThroughTests(PassThroughTestsMixin, SynchronousTestCase):
    package = "runtime.v1alpha2"
