"""
End-to-end tests of pod-aware pulls: the shim as a real C{twistd -n
image-cri-shim} process in front of a real containerd and real
docker-registry processes (L{tests.e2e_support}), and the in-process HTTPS
API server of L{tests.e2e.test_config} (L{cri_shim.testing.FakeAPIServer},
found through a kubeconfig).

Pulls carry a C{sandbox_config} as kubelet's do.  The tests check the
Events the shim posts on the pods (a rewrite, a failover, a refusal, counts
raised by repeats), that a pull takes no longer with the API server down
or stalled than with events off (the numbers are written to trial's log as
C{POD-EVENTS LATENCY} lines, and to C{$POD_EVENTS_LATENCY_FILE} when set),
and that pods in two namespaces pulling the same name are served by their
own registries, with their own logins, never by the other's.
"""

import os
import socket
import statistics
import time

import grpc
from twisted.internet.defer import inlineCallbacks, returnValue
from twisted.internet.threads import deferToThread
from twisted.python import log as twisted_log

from cri_shim.ops import ctl
from tests.e2e.test_config import _LiveConfigCase, wait_until
from tests.e2e_support import ALICE, BOB, CALL_TIMEOUT

#: What the tests add to the shim's config: refusals on, health checks
#: that do not get in the way.
EXTRA = ("allowUpstream: false\nprobeTimeout: 1s\n"
         "healthCheck: {interval: 60s, timeout: 1s}\n")
#: How long an event may take to show on the API server.
EVENT_LIMIT = 10.0
#: Pulls measured per mode.
PULLS = 20


class _PodCase(_LiveConfigCase):
    """
    Pulls for pods, and the events the API server holds.
    """

    def _pull_for(self, name, namespace=None, pod=None):
        api = self.client.api
        request = api.PullImageRequest(image=self.client.image(name))
        if namespace is not None:
            request.sandbox_config.metadata.name = pod
            request.sandbox_config.metadata.namespace = namespace
            request.sandbox_config.metadata.uid = "uid-" + pod
            request.sandbox_config.labels["app"] = pod
        return self.client.PullImage(request, timeout=CALL_TIMEOUT).image_ref

    def pull_for(self, name, namespace=None, pod=None):
        """
        :return: a Deferred firing with the image ID, or the C{grpc.RpcError}
            the pull failed with.
        """
        def attempt():
            try:
                return self._pull_for(name, namespace, pod)
            except grpc.RpcError as e:
                return e
        return deferToThread(attempt)

    def events_on(self, namespace, pod):
        """
        :return: the Events on C{namespace/pod}.
        """
        return [event for (where, _), event in sorted(self.apiserver.events.items())
                if where == namespace and event["involvedObject"]["name"] == pod]

    @inlineCallbacks
    def wait_for_event(self, namespace, pod, reason, count=1):
        """
        Wait until C{namespace/pod} has an Event for C{reason} with C{count}.

        :return: a Deferred firing with the Event.
        """
        def found():
            return [event for event in self.events_on(namespace, pod)
                    if event["reason"] == reason and event["count"] >= count]
        yield wait_until(found, EVENT_LIMIT, lambda: "{} event x{} on {}/{}: {}\n{}".format(
            reason, count, namespace, pod, self.apiserver.events, self.node.shim_log()))
        [event] = found()
        returnValue(event)


class PodEventTests(_PodCase):
    """
    The pod's events say where its image came from.
    """

    @inlineCallbacks
    def test_rewrite_failover_refusal(self):
        """
        A rewritten pull, a failover and a refusal each make one Event on
        the right pod, with the right reason, from image-cri-shim; a
        repeated pull raises the count of the same Event; a pull without a
        pod makes none.
        """
        self.offline.push_image("library/rw", "1", content=b"offline rw")
        self.offline.push_image("library/fo", "1", content=b"offline fo")
        backup = self.second.push_image("library/fo", "1", content=b"backup fo")
        yield self.start(self.config(extra=EXTRA))

        yield self.pull_for("rw:1")
        yield self.pull_for("rw:1", "team-a", "web-1")
        event = yield self.wait_for_event("team-a", "web-1", "ImageRewritten")
        self.assertEqual(len(self.apiserver.events), 1, self.apiserver.events)
        self.assertEqual(event["type"], "Normal")
        self.assertEqual(event["involvedObject"], {
            "apiVersion": "v1", "kind": "Pod", "name": "web-1", "namespace": "team-a",
            "uid": "uid-web-1"})
        self.assertEqual(event["message"], "pulled rw:1 from {0} as {0}/library/rw:1".format(
            self.offline.host))
        self.assertEqual(event["source"]["component"], "image-cri-shim")
        self.assertTrue(event["source"]["host"])
        yield self.pull_for("rw:1", "team-a", "web-1")
        event = yield self.wait_for_event("team-a", "web-1", "ImageRewritten", count=2)
        self.assertEqual(len(self.events_on("team-a", "web-1")), 1)

        yield deferToThread(self.offline.stop)
        image = yield self.pull_for("fo:1", "team-b", "api-1")
        self.assertEqual(image, backup.config_digest)
        event = yield self.wait_for_event("team-b", "api-1", "RegistryFailover")
        self.assertEqual(event["type"], "Warning")
        self.assertTrue(event["message"].startswith(
            "pulled fo:1 from {0} as {0}/library/fo:1 ({1} unreachable: ".format(
                self.second.host, self.offline.host)), event["message"])

        error = yield self.pull_for("nothing:1", "team-c", "job-1")
        self.assertEqual(error.code(), grpc.StatusCode.NOT_FOUND)
        yield self.pull_for("nothing:1", "team-c", "job-1")
        event = yield self.wait_for_event("team-c", "job-1", "ImageRefused", count=2)
        self.assertEqual(event["type"], "Warning")
        self.assertIn("refused nothing:1: no configured registry serving this pod has it",
                      event["message"])
        self.assertEqual(len(self.apiserver.events), 3, self.apiserver.events)
        yield self.assertStopsCleanlyWithoutSecrets()

    @inlineCallbacks
    def test_forbidden_logged_once(self):
        """
        An identity that may not create events: said once in the log, the
        pulls unaffected.
        """
        self.offline.push_image("library/rw", "1", content=b"offline rw")
        self.apiserver.events_forbidden = True
        yield self.start(self.config(extra=EXTRA))
        for pod in ("a", "b", "c"):
            image = yield self.pull_for("rw:1", "team-a", pod)
            self.assertTrue(image.startswith("sha256:"), image)
        yield self.wait_for_log("pod events off: user {!r}".format("shim-node"))
        self.assertEqual(self.count("may not create events"), 1)
        yield self.assertStopsCleanlyWithoutSecrets()


class PullLatencyTests(_PodCase):
    """
    Posting events is never on a pull's critical path.
    """

    timeout = 180

    @inlineCallbacks
    def measure(self, mode, extra, before_stop=None):
        """
        Start the shim, pull once to warm up, then time L{PULLS} pulls for
        pods; stop it (once C{before_stop}, if given, returns true: the
        events are posted after the pulls, on the shim's own time).

        :return: a Deferred firing with the seconds of each pull.
        """
        yield self.start(self.config(extra=EXTRA + extra))
        yield self.pull_for("rw:1", "team-a", "warm-up")
        took = []
        for index in range(PULLS):
            started = time.monotonic()
            image = yield self.pull_for("rw:1", "team-a", "pod-{}".format(index))
            took.append(time.monotonic() - started)
            self.assertTrue(image.startswith("sha256:"), (mode, image))
        if before_stop is not None:
            yield wait_until(before_stop, EVENT_LIMIT, self.node.shim_log)
        yield deferToThread(self.node.stop_shim)
        line = "POD-EVENTS LATENCY {:<28} p50 {:6.1f} ms  max {:6.1f} ms over {} pulls".format(
            mode, statistics.median(took) * 1000, max(took) * 1000, PULLS)
        twisted_log.msg(line)
        if os.environ.get("POD_EVENTS_LATENCY_FILE"):
            with open(os.environ["POD_EVENTS_LATENCY_FILE"], "a") as f:
                f.write(line + "\n")
        returnValue(took)

    @inlineCallbacks
    def test_api_server_down_or_slow(self):
        """
        Pulls take no longer with the API server refusing connections, or
        accepting events and never answering, than with events off: the
        same p50 and max, within noise (the events wait on the reactor).
        """
        self.offline.push_image("library/rw", "1", content=b"offline rw")
        off = yield self.measure("events: false", "events: false\n")
        self.apiserver.stall_events = True
        slow = yield self.measure("API server never answers", "")
        self.assertGreater(len(self.apiserver.stalled), 0)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = "https://127.0.0.1:{}".format(s.getsockname()[1])
        self.server = closed
        self.write_kubeconfig(self.token)
        refused = "pod events: API server {} unreachable".format(closed)
        down = yield self.measure("API server down", "",
                                  before_stop=lambda: refused in self.node.shim_log())
        for name, on in (("slow", slow), ("down", down)):
            self.assertLessEqual(statistics.median(on), statistics.median(off) * 1.5 + 0.02,
                                 (name, on, off))
            self.assertLessEqual(max(on), max(off) * 2 + 0.1, (name, on, off))


class NamespaceRoutingTests(_PodCase):
    """
    Registries restricted by namespace serve their pods only.
    """

    def routed_config(self):
        return "\n".join([
            "shim: {}".format(self.node.socket),
            "cri: {}".format(self.node.containerd.socket),
            "admin: {}".format(self.node.admin),
            "registries:",
            "  - address: {}".format(self.offline.url),
            "    auth: {}:{}".format(*ALICE),
            "    namespaces: [team-a]",
            "  - address: {}".format(self.second.url),
            "    auth: {}:{}".format(*BOB),
            "    namespaces: [team-b]",
            "    priority: 900",
        ]) + "\n" + EXTRA

    @inlineCallbacks
    def test_two_namespaces(self):
        """
        Pods in two namespaces pulling the same name get each their own
        registry's image (each registry takes only its own login), never
        the other's, even for a name only the other holds; a pull for no pod
        is served by neither.  C{explain --namespace} shows the rules.
        """
        in_a = self.offline.push_image("library/app", "1", content=b"team a app")
        in_b = self.second.push_image("library/app", "1", content=b"team b app")
        self.offline.push_image("library/only-a", "1", content=b"only in a")
        yield self.start(self.routed_config())

        image_a = yield self.pull_for("app:1", "team-a", "web")
        image_b = yield self.pull_for("app:1", "team-b", "web")
        self.assertEqual((image_a, image_b), (in_a.config_digest, in_b.config_digest))
        # Again, from the cache: each namespace still its own.
        image_b = yield self.pull_for("app:1", "team-b", "web-2")
        image_a = yield self.pull_for("app:1", "team-a", "web-2")
        self.assertEqual((image_a, image_b), (in_a.config_digest, in_b.config_digest))

        refused = yield self.pull_for("only-a:1", "team-b", "web")
        self.assertEqual(refused.code(), grpc.StatusCode.NOT_FOUND)
        self.assertIn("asked: {})".format(self.second.host), refused.details())
        nobody = yield self.pull_for("app:1")
        self.assertEqual(nobody.code(), grpc.StatusCode.NOT_FOUND)
        other = yield self.pull_for("app:1", "team-c", "web")
        self.assertEqual(other.code(), grpc.StatusCode.NOT_FOUND)

        answer = yield deferToThread(ctl.ask, self.node.admin, "GET",
                                     "/explain?image=app:1&namespace=team-b")
        self.assertEqual([(rule["registry"], rule["matches"]) for rule in answer["rules"]],
                         [(self.second.host, True), (self.offline.host, False)])
        self.assertEqual(answer["decision"]["registry"], self.second.host)
        yield self.assertStopsCleanlyWithoutSecrets()


class TenantTests(_PodCase):
    """
    Issue 17, finding 1, on a real containerd: a registry restricted to
    C{team-a} holds team-a's private build of C{library/app:1}; an
    unrestricted one holds the public build.
    """

    def tenant_config(self):
        return "\n".join([
            "shim: {}".format(self.node.socket),
            "cri: {}".format(self.node.containerd.socket),
            "admin: {}".format(self.node.admin),
            "registries:",
            "  - address: {}".format(self.offline.url),
            "    auth: {}:{}".format(*ALICE),
            "    namespaces: [team-a]",
            "    priority: 1000",
            "  - address: {}".format(self.second.url),
            "    auth: {}:{}".format(*BOB),
            "    priority: 900",
        ]) + "\n" + EXTRA

    def _status(self, name):
        api = self.client.api
        return self.client.ImageStatus(api.ImageStatusRequest(image=self.client.image(name)),
                                       timeout=CALL_TIMEOUT)

    def _listed(self):
        api = self.client.api
        return {image.id: list(image.repo_tags) for image in
                self.client.ListImages(api.ListImagesRequest(), timeout=CALL_TIMEOUT).images}

    def _repull_seconds(self, count=10):
        """
        :return: the seconds each of C{count} pulls of a present image for
            team-a takes: what kubelet pays when ImageStatus cannot answer.
        """
        spent = []
        for attempt in range(count):
            started = time.monotonic()
            self._pull_for("app:1", "team-a", "web-{}".format(attempt))
            spent.append(time.monotonic() - started)
        return spent

    @inlineCallbacks
    def test_tenant_never_gets_another_tenants_image(self):
        """
        After team-a pulls its private build, ImageStatus (no pod) does not
        answer C{app:1} with it, nor, after team-b pulls the public build,
        with that; each pull gets its own pod's image; ListImages shows
        team-a's image under its registry's name, the public one under the
        name asked for; by ID each image is found.
        """
        private = self.offline.push_image("library/app", "1", content=b"team a private build")
        public = self.second.push_image("library/app", "1", content=b"public build")
        yield self.start(self.tenant_config())
        image_a = yield self.pull_for("app:1", "team-a", "web")
        self.assertEqual(image_a, private.config_digest)
        status = yield deferToThread(self._status, "app:1")
        self.assertFalse(status.HasField("image"))
        image_b = yield self.pull_for("app:1", "team-b", "web")
        self.assertEqual(image_b, public.config_digest)
        for name in ("app:1", "docker.io/library/app:1"):
            status = yield deferToThread(self._status, name)
            self.assertFalse(status.HasField("image"), name)
        image_a = yield self.pull_for("app:1", "team-a", "web-2")
        self.assertEqual(image_a, private.config_digest)
        status = yield deferToThread(self._status, private.config_digest)
        self.assertEqual(status.image.id, private.config_digest)
        listed = yield deferToThread(self._listed)
        self.assertEqual(listed[private.config_digest],
                         ["{}/library/app:1".format(self.offline.host)])
        self.assertEqual(listed[public.config_digest], ["docker.io/library/app:1"])
        spent = yield deferToThread(self._repull_seconds)
        twisted_log.msg("TENANT RE-PULL of a present image: median {:.4f} s, max {:.4f} s".format(
            statistics.median(spent), max(spent)))
        yield self.assertStopsCleanlyWithoutSecrets()
