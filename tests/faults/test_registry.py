"""
Fault injection on the registry side, end to end: the shim as a real
C{twistd -n image-cri-shim} process in front of a real containerd, with real
docker-registry processes (L{tests.e2e_support}) and, where a registry must
misbehave in ways a real one does not, a scripted raw-socket HTTP server
(L{tests.fault_support.ScriptedServer}) that hangs, stalls or cuts answers
at a chosen point and records when the shim opened and closed each
connection.

- L{FlappingRegistriesTests}: two registries with overlapping images are
  stopped and started in turn (never both down) while fresh names are
  pulled; every image a registry that is up holds must be pulled.
- L{StalledRegistryTests}: a registry that never answers, or answers part of
  a response and stalls; lookups are bounded by C{probeTimeout}, a pull
  stuck on such a registry is abandoned once the health checker finds it
  down, and kubelet cancelling a call (or its deadline passing) closes the
  probe's connection at once.

The flapping lasts L{fault_support.CI_FLAP_SECONDS}, or
L{fault_support.LONG_FLAP_SECONDS} with C{ICS_FAULTS_LONG=1}.  Measured
figures go to trial's log (C{test.log}) as C{FAULTS} lines.

Trial does not call C{setUpClass}: each test makes its own sandbox and
removes it with C{addCleanup}.
"""

import itertools
import random
import threading
import time

import grpc
from twisted.logger import Logger
from twisted.trial import unittest

from tests import fault_support
from tests.e2e_support import CALL_TIMEOUT, POLL_INTERVAL
from tests.fault_support import HOLE, REPLY, STALL, ScriptedServer, http_response
from tests.e2e.test_failover import _FailoverTestsMixin, transitions

_log = Logger(namespace="tests.faults.test_registry")

#: The health settings of the flapping test: a registry is checked every
#: second and is down after two failed checks (or at once when a lookup or
#: a pull could not reach it).
FLAP_SETTINGS = ("probeTimeout: 1s\n"
                 "healthCheck: {interval: 1s, timeout: 1s, failureThreshold: 2}\n"
                 # An image no registry up holds is refused at once, never
                 # pulled from Docker Hub (no network in CI).
                 "allowUpstream: false\n")
#: How long each registry stays down in one flap, and how long both stay up
#: between two flaps.
DOWN_SECONDS = 3.0
BOTH_UP_SECONDS = 1.5
#: The deadline of each pull during the flapping.
FLAP_PULL_DEADLINE = 20.0
#: The least time between two pulls started by the puller.
PULL_SPACING = 0.3

#: C{probeTimeout} of the stalled-registry tests (seconds).
PROBE_TIMEOUT = 1.0
STALL_SETTINGS = ("probeTimeout: 1s\n"
                  "healthCheck: {interval: 1s, timeout: 1s, failureThreshold: 2}\n")
#: The deadline of a pull that the stalled registry would hold forever:
#: more than the health checker needs to find it down (two 1 s checks,
#: about 3 s), far less than CALL_TIMEOUT.
STALLED_PULL_DEADLINE = 10.0
#: The cancellation test: a probe timeout it must not wait for.
LONG_PROBE_TIMEOUT = 10.0
CANCEL_AFTER = 0.2
#: How soon after a cancel (or an expired deadline) the probe's connection
#: must be closed.
CLOSE_LIMIT = 1.0

FAKE_DIGEST = "sha256:" + "ab" * 32
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def _report(test, what, value, unit="s"):
    _log.info("FAULTS {test}: {what}: {value} {unit}", test=test.id(), what=what,
              value=("{:.3f}".format(value) if isinstance(value, float) else value), unit=unit)


class _RegistryFaultsMixin(_FailoverTestsMixin):
    """
    L{_FailoverTestsMixin} (a primary and a backup registry, the shim in
    front of containerd) plus call helpers with deadlines.
    """

    def call_with_deadline(self, method, request, deadline):
        """
        Make a unary call through the shim with C{deadline} seconds.

        :return: C{(response or grpc.RpcError, seconds it took)}.
        """
        started = time.monotonic()
        try:
            result = method(request, timeout=deadline)
        except grpc.RpcError as e:
            result = e
        return result, time.monotonic() - started

    def status_id(self, name, client=None):
        """
        :return: the image ID ImageStatus gives for C{name}, or C{None} when
            the shim says it is not present.
        """
        client = client or self.client
        response = client.ImageStatus(client.api.ImageStatusRequest(image=client.image(name)),
                                      timeout=CALL_TIMEOUT)
        return response.image.id if response.HasField("image") else None

    def report(self, what, value, unit="s"):
        _report(self, what, value, unit)


class FlappingRegistriesTests(_RegistryFaultsMixin, unittest.SynchronousTestCase):
    """
    Two registries holding overlapping image sets are stopped and started
    in turn while fresh names are pulled.
    """

    def test_flapping(self):
        """
        The primary (the config's C{address}) and the backup (its
        C{registries:} entry) each hold images of their own (C{only0-N},
        C{only1-N}) and images both hold (C{both-N}, different content on
        each).  For L{fault_support.CI_FLAP_SECONDS} the main thread stops
        one registry for L{DOWN_SECONDS}, starts it, waits
        L{BOTH_UP_SECONDS}, then does the same with the other (so at most
        one is ever down), while a thread pulls fresh names, one kind after
        the other, each with a deadline.  Then:

        - every pull of a C{both-N} image succeeded, with the image of one of
          the two registries;
        - every pull of an image only registry X holds succeeded whenever X
          was up for the whole call (from before the call started to after
          it returned; "up" meaning its process was started and serving,
          "down" from just before it was told to stop); one that failed
          (X down at some point) fails cleanly (no deadline hit) and
          succeeds once X is back;
        - ImageStatus of images pulled earlier reports them present
          throughout, and still does once both registries are stopped.
        """
        duration = (fault_support.LONG_FLAP_SECONDS if fault_support.long_run()
                    else fault_support.CI_FLAP_SECONDS)
        self.node.start_sandbox()
        registries = [self.primary, self.backup]
        count = int(duration / PULL_SPACING) // 3 + 2
        images = {}  # name -> (kind, {registry index: image ID})
        for number in range(1, count + 1):
            for kind, holders in (("both", (0, 1)), ("only0", (0,)), ("only1", (1,))):
                repository = "library/{}-{}".format(kind, number)
                ids = {}
                for index in holders:
                    ids[index] = registries[index].push_image(
                        repository, "1", content="r{} {}".format(index, repository).encode()
                    ).config_digest
                images["{}-{}:1".format(kind, number)] = (kind, ids)
        # Pulled before the flapping: ImageStatus must find them throughout.
        early = ["both-{}:1".format(count), "only0-{}:1".format(count),
                 "only1-{}:1".format(count)]
        self.start_shim(extra=FLAP_SETTINGS)
        self.wait_for_transition(self.primary.host, "up")
        self.wait_for_transition(self.backup.host, "up")
        present = {}
        for name in early:
            present[name] = self.pull(name)[0]
            self.assertIn(present[name], images[name][1].values())
        plan = [name for number in range(1, count)
                for name in ("both-{}:1".format(number), "only0-{}:1".format(number),
                             "only1-{}:1".format(number))]

        events = []  # (time, registry index, "down" | "up")
        results = []  # (name, started, ended, image ID or RpcError)
        status_problems = []
        stop = threading.Event()
        client = self.node.client("runtime.v1")
        api = client.api
        status_rng = random.Random(7)

        def puller():
            for name in plan:
                if stop.is_set():
                    return
                started = time.monotonic()
                try:
                    outcome = client.PullImage(api.PullImageRequest(image=client.image(name)),
                                               timeout=FLAP_PULL_DEADLINE).image_ref
                except grpc.RpcError as e:
                    outcome = e
                ended = time.monotonic()
                results.append((name, started, ended, outcome))
                if not isinstance(outcome, grpc.RpcError):
                    present[name] = outcome
                known = sorted(present)
                if known:
                    check = status_rng.choice(known)
                    try:
                        seen = self.status_id(check, client)
                    except grpc.RpcError as e:
                        seen = "{}: {}".format(e.code(), e.details())
                    if seen != present[check]:
                        status_problems.append((check, present[check], seen))
                stop.wait(max(0.0, PULL_SPACING - (time.monotonic() - started)))

        thread = threading.Thread(target=puller, name="puller", daemon=True)
        flap_started = time.monotonic()
        thread.start()
        try:
            # Registries are stopped and started from this (the main)
            # thread: the sandbox's children die with the thread that
            # started them.
            for index in itertools.cycle((0, 1)):
                if time.monotonic() - flap_started >= duration or not thread.is_alive():
                    break
                events.append((time.monotonic(), index, "down"))
                registries[index].stop()
                time.sleep(DOWN_SECONDS)
                registries[index].start()
                events.append((time.monotonic(), index, "up"))
                time.sleep(BOTH_UP_SECONDS)
        finally:
            stop.set()
            thread.join(FLAP_PULL_DEADLINE + 5)
        flapped = time.monotonic() - flap_started
        self.assertFalse(thread.is_alive(), "a pull did not return within its deadline")
        for registry in registries:
            self.assertTrue(registry.running)

        def up_throughout(index, start, end):
            state = "up"
            for when, which, what in events:
                if which != index:
                    continue
                if when <= start:
                    state = what
                elif when <= end:
                    return False
            return state == "up"

        violations = []
        retry = []
        codes = {}
        for name, started, ended, outcome in results:
            kind, ids = images[name]
            if not isinstance(outcome, grpc.RpcError):
                if outcome not in ids.values():
                    violations.append("{} gave {}, held: {}".format(name, outcome, ids))
                continue
            code = outcome.code()
            codes[code.name] = codes.get(code.name, 0) + 1
            holders_up = [index for index in ids if up_throughout(index, started, ended)]
            if kind == "both" or holders_up:
                violations.append("{} failed ({}: {}) while {} stayed up; {:.2f}-{:.2f} s "
                                  "into the flapping".format(
                                      name, code, outcome.details(),
                                      [registries[i].host for i in holders_up] or "one",
                                      started - flap_started, ended - flap_started))
            elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
                violations.append("{} hit its deadline".format(name))
            else:
                retry.append(name)
        # Everything is up again: each image that failed while its only
        # holder was down is pulled now.
        for name in retry:
            kind, ids = images[name]
            image_id, _ = self.pull(name)
            self.assertEqual(image_id, list(ids.values())[0])
            present[name] = image_id

        durations = sorted(ended - started for _, started, ended, _ in results)
        self.report("flapping time", flapped)
        self.report("registry flaps", len(events) // 2, "")
        self.report("pulls", len(results), "")
        self.report("pulls failed (holder down), then pulled", len(retry), "")
        self.report("failure codes", codes, "")
        if durations:
            self.report("pull median", durations[len(durations) // 2])
            self.report("pull max", durations[-1])
        self.assertEqual(violations, [], "\n".join(violations))
        self.assertEqual(status_problems, [])
        self.assertGreater(len(results), 3 * len(events) // 2,
                           "too few pulls to mean anything")
        self.assertTrue(any(images[name][0] == "both" and not isinstance(outcome, grpc.RpcError)
                            for name, _, _, outcome in results))

        # Both registries down: whatever was pulled is still present.
        for registry in registries:
            registry.stop()
        started = time.monotonic()
        for name, image_id in sorted(present.items()):
            self.assertEqual(self.status_id(name), image_id, name)
        took = time.monotonic() - started
        self.report("ImageStatus of {} images, both registries down".format(len(present)),
                    took)
        self.assertNotIn("Traceback", self.node.shim_log())
        self.assertCleanLog()


# -- misbehaving registries ------------------------------------------------------------


class _Misbehaving:
    """
    The script of a L{ScriptedServer} acting as a registry whose behaviour
    is chosen by C{mode}, which a test may change at any time:

    - C{"hole"}: accepts connections and never answers anything;
    - C{"manifests-hang"}: answers C{GET /v2/} (so the health checker sees
      it up) but never answers a manifest request;
    - C{"manifests-partial"}: answers C{GET /v2/}; for a manifest request
      sends the status line and some headers, then stalls (the header block
      never ends);
    - C{"bodies-stall"}: answers every request with complete headers (200, a
      manifest's type and digest, C{Content-Length: 1000}) and, for a GET,
      10 bytes of the body, then stalls: a HEAD (the shim's probe) gets a
      complete answer, a GET (containerd's fetch, the health check) never
      ends.
    """

    def __init__(self, mode):
        self.mode = mode

    def __call__(self, method, path):
        mode = self.mode
        if mode == "hole":
            return HOLE, None
        if mode == "bodies-stall":
            head = http_response(200, headers=[
                ("Content-Type", MANIFEST_TYPE if "/manifests/" in path else "application/json"),
                ("Docker-Content-Digest", FAKE_DIGEST),
                ("Docker-Distribution-Api-Version", "registry/2.0")], length=1000)
            if method == "HEAD":
                return REPLY, head
            return STALL, head + b"{" * 10
        if "/manifests/" not in path:
            return REPLY, http_response(200, headers=[
                ("Content-Type", "application/json"),
                ("Docker-Distribution-Api-Version", "registry/2.0")], body=b"{}")
        if mode == "manifests-hang":
            return HOLE, None
        if mode == "manifests-partial":
            return STALL, b"HTTP/1.1 200 OK\r\nContent-Type: " + MANIFEST_TYPE.encode() + b"\r\n"
        raise AssertionError("unknown mode " + mode)


class StalledRegistryTests(_RegistryFaultsMixin, unittest.SynchronousTestCase):
    """
    A primary registry that hangs or stalls; the backup is a real registry.
    """

    def start_misbehaving(self, mode):
        """
        Start containerd and the backup, and a scripted primary in C{mode}.

        :return: C{(script, server)}.
        """
        script = _Misbehaving(mode)
        server = ScriptedServer(script)
        self.addCleanup(server.close)
        self.node.containerd.start()
        self.backup.start()
        return script, server

    def test_lookups_bounded_by_probe_timeout(self):
        """
        With the primary hanging on manifest requests (its C{/v2/} answered,
        so the health checker keeps finding it up), then sending part of the
        headers and stalling, then answering nothing at all: each PullImage
        of a fresh image the backup holds returns within C{probeTimeout} +
        1 s, with the backup's image, including when several are made at
        once; every other call made meanwhile returns well within its
        deadline.
        """
        script, server = self.start_misbehaving("manifests-hang")
        fresh = iter(self.push_fresh(12, primary=False))
        self.start_shim(primary_url=server.url, extra=STALL_SETTINGS)
        primary = server.host
        self.wait_for_transition(primary, "up")
        self.wait_for_transition(self.backup.host, "up")
        deadline = PROBE_TIMEOUT + 5.0
        for mode in ("manifests-hang", "manifests-partial", "hole"):
            # A probe timing out marks the primary down at once; the health
            # checker finds it up again (its /v2/ answers in the previous
            # mode), so that this mode's first lookup asks it again.
            self.wait_until_up(primary)
            script.mode = mode
            name, _, on_backup = next(fresh)
            result, took = self.call_with_deadline(
                self.client.PullImage, self.api.PullImageRequest(image=self.client.image(name)),
                deadline)
            self.report("{}: pull".format(mode), took)
            self.assertNotIsInstance(result, grpc.RpcError)
            self.assertEqual(result.image_ref, on_backup.config_digest, mode)
            self.assertLess(took, PROBE_TIMEOUT + 1.0, mode)
            self.assertTrue(server.requests_for("/manifests/"), mode)

            # Several at once, and other calls meanwhile.
            if mode != "hole":
                self.wait_until_up(primary)
            batch = [next(fresh) for _ in range(3)]
            outcomes = [None] * len(batch)

            def pull(index, name):
                outcomes[index] = self.call_with_deadline(
                    self.client.PullImage,
                    self.api.PullImageRequest(image=self.client.image(name)), deadline)
            threads = [threading.Thread(target=pull, args=(i, entry[0]), daemon=True)
                       for i, entry in enumerate(batch)]
            for thread in threads:
                thread.start()
            version, version_took = self.call_with_deadline(
                self.client.Version, self.api.VersionRequest(), 2.0)
            self.assertEqual(version.runtime_name, "containerd")
            self.assertLess(version_took, 1.0)
            status, status_took = self.call_with_deadline(
                self.client.ImageStatus,
                self.api.ImageStatusRequest(image=self.client.image(name)), 2.0)
            self.assertTrue(status.HasField("image"))
            self.assertLess(status_took, 1.0)
            for thread in threads:
                thread.join(deadline + 1)
            for (name, _, on_backup), (result, took) in zip(batch, outcomes):
                self.report("{}: concurrent pull {}".format(mode, name), took)
                self.assertNotIsInstance(result, grpc.RpcError)
                self.assertEqual(result.image_ref, on_backup.config_digest)
                self.assertLess(took, PROBE_TIMEOUT + 1.0, mode)
        self.assertNotIn("Traceback", self.node.shim_log())
        self.assertCleanLog()

    def wait_until_up(self, name, timeout=12.0):
        """
        Wait until the last transition the shim logged for registry C{name}
        is to C{up}.
        """
        started = time.monotonic()
        while True:
            seen = transitions(self.node.shim_log(), name)
            if seen and seen[-1][1] == "up":
                return
            if time.monotonic() - started > timeout:
                self.fail("registry {} not up after {} s:\n{}".format(
                    name, timeout, self.node.shim_log()))
            time.sleep(POLL_INTERVAL)

    def test_stalled_bodies(self):
        """
        A primary that answers every request's headers at once (a HEAD
        completely: the probe finds the image there) and stalls every body:
        containerd's pull from it hangs, and so does the health checker's
        C{GET /v2/} once its headers are in.  The health checker must still
        find the primary down within its timeout and threshold, so that the
        pull is abandoned and served by the backup well before the caller's
        deadline.  And each check that timed out in the middle of a body
        must let go of its connection: after several (they back off: 1 s,
        2 s...), at most one is open, not one per check (which, at one check
        every 8 intervals, would use up the shim's file descriptors within
        days of a registry frozen that way).
        """
        _, server = self.start_misbehaving("bodies-stall")
        [(name, _, on_backup)] = self.push_fresh(1, primary=False)
        self.start_shim(primary_url=server.url, extra=STALL_SETTINGS)
        primary = server.host
        result, took = self.call_with_deadline(
            self.client.PullImage, self.api.PullImageRequest(image=self.client.image(name)),
            STALLED_PULL_DEADLINE)
        self.report("pull from a registry stalling its bodies", took)
        if isinstance(result, grpc.RpcError):
            self.fail("the pull stayed stuck on the stalled registry ({}: {}); registry "
                      "transitions: {}; health checks asked: {}, still open: {}\n{}".format(
                          result.code(), result.details(),
                          transitions(self.node.shim_log(), primary),
                          len(self._health_checks(server)),
                          self._open_health_checks(server), self.node.shim_log()))
        self.assertEqual(result.image_ref, on_backup.config_digest)
        self.assertEqual(transitions(self.node.shim_log(), primary),
                         [("unknown", "down")])
        self.assertIn("registry {}: unknown -> down (no answer within 1s)".format(primary),
                      self.node.shim_log())
        self.assertIn("was found down during the pull", self.node.shim_log())

        started = time.monotonic()
        while len(self._health_checks(server)) < 4 and time.monotonic() - started < 10:
            time.sleep(POLL_INTERVAL)
        # The last one may still be running; the others must let go of
        # their connections (a leak never does, however long this waits).
        started = time.monotonic()
        while self._open_health_checks(server) > 1 and time.monotonic() - started < 10:
            time.sleep(POLL_INTERVAL)
        checks = len(self._health_checks(server))
        still_open = self._open_health_checks(server)
        self.report("health checks timed out", checks, "")
        self.report("their connections still open", still_open, "")
        self.assertGreaterEqual(checks, 4)
        self.assertLessEqual(still_open, 1,
                             "{} of {} timed-out health checks left their connection "
                             "open".format(still_open, checks))
        self.assertNotIn("Traceback", self.node.shim_log())
        self.assertCleanLog()

    def _health_checks(self, server):
        return [entry for entry in server.snapshot()
                if any(path == "/v2/" for _, _, path in entry[1])]

    def _open_health_checks(self, server):
        return sum(1 for _, _, closed in self._health_checks(server) if closed is None)

    def test_cancel_closes_probe(self):
        """
        With C{probeTimeout: 10s}, the backup stopped (and found down) and
        the primary answering C{GET /v2/} but never a manifest request, a
        PullImage's lookup waits on the primary alone.  Kubelet cancelling
        the call after 0.2 s must cancel the probe: the primary sees its
        connection closed within L{CLOSE_LIMIT} of the cancel, not after
        10 s.  The same holds when the call's own deadline (0.5 s) passes.
        The primary is not marked down for it, and the shim serves on.
        """
        script, server = self.start_misbehaving("manifests-hang")
        [(name, _, _), (other, _, _)] = self.push_fresh(2, primary=False)
        self.backup.stop()
        self.start_shim(primary_url=server.url, extra=(
            "probeTimeout: 10s\n"
            "healthCheck: {interval: 60s, timeout: 1s, failureThreshold: 1}\n"))
        primary = server.host
        self.wait_for_transition(primary, "up")
        self.wait_for_transition(self.backup.host, "down")

        # Cancelled by the caller.
        future = self.client.PullImage.future(
            self.api.PullImageRequest(image=self.client.image(name)), timeout=CALL_TIMEOUT)
        called = time.monotonic()
        self._wait_for_probe(server, name, future)
        time.sleep(max(0.0, called + CANCEL_AFTER - time.monotonic()))
        future.cancel()
        cancelled = time.monotonic()
        self.assertTrue(future.cancelled())
        closed = self._wait_closed(server, name, cancelled)
        self.report("cancel -> probe connection closed", closed)

        # The caller's deadline passes.
        call = self.client.PullImage.future(
            self.api.PullImageRequest(image=self.client.image(other)), timeout=0.5)
        self._wait_for_probe(server, other, call)
        with self.assertRaises(grpc.RpcError) as caught:
            call.result(timeout=5.0)
        expired = time.monotonic()
        self.assertEqual(caught.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        closed = self._wait_closed(server, other, expired)
        self.report("deadline -> probe connection closed", closed)

        self.assertEqual(transitions(self.node.shim_log(), primary), [("unknown", "up")])
        version, took = self.call_with_deadline(self.client.Version,
                                                self.api.VersionRequest(), 2.0)
        self.assertEqual(version.runtime_name, "containerd")
        self.assertNotIn("Traceback", self.node.shim_log())
        self.assertCleanLog()

    def _wait_for_probe(self, server, name, future, timeout=5.0):
        repository = "/v2/library/{}/manifests/".format(name.split(":")[0])
        started = time.monotonic()
        while not server.requests_for(repository):
            if future.done():
                self.fail("the call ended before the probe was sent: {}".format(future))
            if time.monotonic() - started > timeout:
                self.fail("no probe for {} after {} s:\n{}".format(
                    name, timeout, self.node.shim_log()))
            time.sleep(0.01)

    def _wait_closed(self, server, name, since, timeout=LONG_PROBE_TIMEOUT + 2):
        """
        Wait until every connection that asked for C{name}'s manifest is
        closed.

        :return: the seconds from C{since} to the close.
        :raise AssertionError: if that took more than L{CLOSE_LIMIT}.
        """
        repository = "/v2/library/{}/manifests/".format(name.split(":")[0])
        while True:
            found = server.requests_for(repository)
            if found and all(closed is not None for _, _, closed in found):
                took = max(closed for _, _, closed in found) - since
                break
            if time.monotonic() - since > timeout:
                self.fail("the probe's connection is still open {} s after".format(timeout))
            time.sleep(0.01)
        self.assertLess(took, CLOSE_LIMIT, "the probe's connection was closed {:.2f} s after "
                        "the call ended (probeTimeout is {:g} s)".format(
                            took, LONG_PROBE_TIMEOUT))
        return took
