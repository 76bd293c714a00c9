"""
End-to-end tests of registry health and failover ("failover that never waits
on a dead registry"): the shim as a real C{twistd -n image-cri-shim} process
in front of a real containerd, with a primary registry (the config's
C{address:}) and a backup (its C{registries:} entry), both real
docker-registry processes behind htpasswd.

Both registries hold the images a test pulls, with different content, so the
image ID a pull returns says which registry served it.  Each image name is
pulled once per test ("fresh"), so the rewrite cache never answers for a
registry that was asked earlier, except in L{PullFailoverTests}, where a
cached rewrite is the point.

The health settings are short (L{HEALTH}): a registry is checked every
second, with a one-second timeout, and is down after two failed checks in a
row, or at once when a lookup or a pull could not reach it.

Every wait is bounded.  The times measured are written to trial's log
(C{test.log}, lines starting with C{failover timing:}).

Trial does not call C{setUpClass}: each test makes its own sandbox and
removes it with C{addCleanup}.
"""

import os
import re
import socket
import threading
import time

import grpc
from twisted.logger import Logger
from twisted.trial import unittest

from cri_shim.ops import ctl
from tests.e2e_support import ALICE, BOB, CALL_TIMEOUT, ShimNode, skip_reason

#: C{probeTimeout}, in seconds.
PROBE_TIMEOUT = 1.0
#: The short health settings most tests run with.
HEALTH = ("probeTimeout: 1s\n"
          "healthCheck: {interval: 1s, timeout: 1s, failureThreshold: 2}\n")
#: How long a pull may take once the primary is known down.
FAST_PULL = 1.0
#: How long a refusal that needs no runtime call may take.
REFUSAL_LIMIT = 0.5
#: The deadline of a pull that hangs on a frozen registry: longer than the
#: health checker takes to find it down (L{HEALTH}: about 4 s).
HUNG_PULL_DEADLINE = 8.0
#: The longest a health transition may take to show in the log: a down
#: registry is checked at most 8 intervals apart (health.MAX_BACKOFF_INTERVALS),
#: plus the check's own timeout, plus slack.
TRANSITION_LIMIT = 12.0
POLL_INTERVAL = 0.02

_log = Logger(namespace="tests.e2e.test_failover")


def _transition_pattern(name, previous=r"\w+", state=r"\w+"):
    """
    :return: a regex for the health checker's line
        C{registry NAME: PREVIOUS -> STATE (REASON)}.
    """
    return re.compile(r"registry {}: ({}) -> ({}) \((.*)\)".format(
        re.escape(name), previous, state))


def transitions(log, name):
    """
    :return: the C{(previous, state)} pairs the shim logged for the registry
        C{name}, in order.
    """
    return [match.group(1, 2) for match in _transition_pattern(name).finditer(log)]


class BlackHole:
    """
    A TCP listener on 127.0.0.1 that accepts every connection and never
    answers nor closes it: a registry host that hangs.  Its thread lives at
    most C{lifetime} seconds, and L{close} ends it at once.
    """

    def __init__(self, lifetime=120.0):
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.accepted = []
        self._deadline = time.monotonic() + lifetime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="black-hole", daemon=True)
        self._thread.start()

    @property
    def url(self):
        """
        C{http://127.0.0.1:PORT}.
        """
        return "http://127.0.0.1:{}".format(self.port)

    def _run(self):
        try:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                try:
                    connection, _ = self._listener.accept()
                except socket.timeout:
                    continue
                except OSError:
                    break
                self.accepted.append(connection)
        finally:
            self._close_all()

    def _close_all(self):
        self._listener.close()
        for connection in self.accepted:
            connection.close()

    def close(self):
        """
        Stop accepting and close every connection.  Idempotent.
        """
        self._stop.set()
        self._thread.join(5)


class _FailoverTestsMixin:
    """
    A node with a primary and a backup registry, and the shim in front of
    its containerd.
    """

    def setUp(self):
        reason = skip_reason()
        if reason is not None:
            raise unittest.SkipTest(reason)
        self.node = ShimNode((ALICE, BOB))
        self.addCleanup(self.node.cleanup)
        self.primary = self.node.offline
        self.backup = self.node.second
        self._pushed = 0

    # -- setup ------------------------------------------------------------------

    def config_text(self, primary_url=None, extra=HEALTH):
        """
        The shim's YAML: the primary (C{primary_url}, by default the sandbox's
        first registry) as C{address:} with Alice's login, the backup as the
        one C{registries:} entry with Bob's, default priorities, the admin
        endpoint inside the sandbox (not on the host's default path, which
        shims running side by side would share), and C{extra}.
        """
        return (
            "shim: {shim}\n"
            "cri: {cri}\n"
            "admin: {admin}\n"
            "stateDir: {state}\n"
            "address: {primary}\n"
            "auth: {alice[0]}:{alice[1]}\n"
            "registries:\n"
            "  - address: {backup}\n"
            "    auth: {bob[0]}:{bob[1]}\n"
            "{extra}"
        ).format(shim=self.node.socket, cri=self.node.containerd.socket,
                 admin=os.path.join(self.node.sandbox.directory, "admin.sock"),
                 state=self.node.state_dir,
                 primary=primary_url or self.primary.url, alice=ALICE, backup=self.backup.url,
                 bob=BOB, extra=extra)

    def start_shim(self, primary_url=None, extra=HEALTH):
        """
        Write the config, start the shim and make a C{runtime.v1} client.
        """
        self.node.write_config(self.config_text(primary_url, extra))
        self.node.start_shim()
        self.client = self.node.client("runtime.v1")
        self.api = self.client.api

    def push_fresh(self, count, primary=True):
        """
        Push C{count} images never pushed before in this test, with
        different content on each registry.

        :param primary: push to the primary too, not only to the backup.
        :return: a list of C{(name, primary image or None, backup image)},
            C{name} being what kubelet would ask for (C{fresh-N:1}).
        """
        images = []
        for _ in range(count):
            self._pushed += 1
            repository = "library/fresh-{}".format(self._pushed)
            on_primary = None
            if primary:
                on_primary = self.primary.push_image(
                    repository, "1", content="primary {}".format(repository).encode())
            on_backup = self.backup.push_image(
                repository, "1", content="backup {}".format(repository).encode())
            if on_primary is not None:
                self.assertNotEqual(on_primary.config_digest, on_backup.config_digest)
            images.append(("fresh-{}:1".format(self._pushed), on_primary, on_backup))
        return images

    # -- calls --------------------------------------------------------------------

    def pull(self, name, timeout=CALL_TIMEOUT):
        """
        Pull C{name} through the shim.

        :return: C{(image ID, seconds the call took)}.
        """
        started = time.monotonic()
        response = self.client.PullImage(
            self.api.PullImageRequest(image=self.client.image(name)), timeout=timeout)
        return response.image_ref, time.monotonic() - started

    def remove(self, name):
        self.client.RemoveImage(self.api.RemoveImageRequest(image=self.client.image(name)),
                                timeout=CALL_TIMEOUT)

    # -- the shim's log -------------------------------------------------------------

    def wait_for_transition(self, name, state, previous=r"\w+", timeout=TRANSITION_LIMIT):
        """
        Wait until the shim logs that registry C{name} went to C{state}.

        :return: the seconds waited.
        """
        pattern = _transition_pattern(name, previous, state)
        started = time.monotonic()
        while not pattern.search(self.node.shim_log()):
            if time.monotonic() - started > timeout:
                self.fail("no 'registry {}: {} -> {}' line after {} s:\n{}".format(
                    name, previous, state, timeout, self.node.shim_log()))
            if self.node.process.poll() is not None:
                self.fail("the shim exited:\n" + self.node.shim_log())
            time.sleep(POLL_INTERVAL)
        return time.monotonic() - started

    def assertTransitions(self, name, expected):
        """
        The shim logged exactly the transitions C{expected} for registry
        C{name}, in order.
        """
        log = self.node.shim_log()
        self.assertEqual(transitions(log, name), expected, log)

    def assertCleanLog(self):
        """
        No password, no base64 C{user:password} and no traceback is in the
        shim's log.
        """
        log = self.node.shim_log()
        for secret in self.node.secrets():
            self.assertNotIn(secret, log)
        self.assertNotIn("Traceback", log)

    def report(self, what, seconds):
        """
        Record a measured time in trial's log.
        """
        _log.info("failover timing: {test}: {what}: {seconds:.3f} s", test=self.id(),
                  what=what, seconds=seconds)


class FailoverTests(_FailoverTestsMixin, unittest.SynchronousTestCase):
    """
    Pulls go to the backup, and never wait on the primary, while the primary
    is stopped or hangs, and go back to the primary once it is up again.
    """

    def test_stopped_primary(self):
        """
        Once the primary registry's process is stopped, the next pull of an
        image both registries hold is served by the backup within probe
        timeout + 1 s; once the shim has logged the primary down, each pull
        of a fresh image takes under 1 s, and is served by the backup.
        """
        self.node.start_sandbox()
        before, first, *later = self.push_fresh(5)
        self.start_shim()
        self.wait_for_transition(self.primary.host, "up")
        self.wait_for_transition(self.backup.host, "up")
        self.assertEqual(self.pull(before[0])[0], before[1].config_digest)

        stopped = time.monotonic()
        self.primary.stop()
        image_id, took = self.pull(first[0])
        failover = time.monotonic() - stopped
        self.report("stop -> first pull served by the backup", failover)
        self.report("that pull", took)
        self.assertEqual(image_id, first[2].config_digest)
        self.assertLess(failover, PROBE_TIMEOUT + 1.0)

        waited = self.wait_for_transition(self.primary.host, "down")
        self.report("then waited for the down line", waited)
        for name, _, on_backup in later:
            image_id, took = self.pull(name)
            self.report("pull {} with the primary down".format(name), took)
            self.assertEqual(image_id, on_backup.config_digest)
            self.assertLess(took, FAST_PULL)

        self.assertTransitions(self.primary.host, [("unknown", "up"), ("up", "down")])
        self.assertTransitions(self.backup.host, [("unknown", "up")])
        self.assertCleanLog()

    def test_black_holed_primary(self):
        """
        With the primary's address on a listener that accepts connections
        and never answers, the first (cold) pull is served by the backup
        within probe timeout + 1 s, and each later pull of a fresh image
        takes under 1 s.
        """
        hole = BlackHole()
        self.addCleanup(hole.close)
        self.node.containerd.start()
        self.backup.start()
        first, *later = self.push_fresh(4, primary=False)
        self.start_shim(primary_url=hole.url)
        primary = "127.0.0.1:{}".format(hole.port)

        # Cold: the health checker has not given up on the primary yet.
        self.assertEqual(transitions(self.node.shim_log(), primary), [])
        image_id, took = self.pull(first[0])
        self.report("first cold pull", took)
        self.assertEqual(image_id, first[2].config_digest)
        self.assertLess(took, PROBE_TIMEOUT + 1.0)
        self.assertTrue(hole.accepted, "the shim never connected to the black hole")

        self.wait_for_transition(primary, "down")
        for name, _, on_backup in later:
            image_id, took = self.pull(name)
            self.report("pull {} with the primary down".format(name), took)
            self.assertEqual(image_id, on_backup.config_digest)
            self.assertLess(took, FAST_PULL)

        self.assertTransitions(primary, [("unknown", "down")])
        self.assertTransitions(self.backup.host, [("unknown", "up")])
        self.assertCleanLog()

    def test_paused_primary(self):
        """
        A primary that is frozen (SIGSTOP: it keeps its socket and accepts
        connections but answers nothing) while the node is idle is not
        noticed (an idle shim asks its registries nothing); the next pull
        of a fresh image costs at most the probe timeout (plus slack), is
        served by the backup, and its lookup logs the primary down, as
        having given no answer within the probe timeout; from then on each
        pull of a fresh image takes under 1 s and is served by the backup.
        """
        self.node.start_sandbox()
        first, *images = self.push_fresh(4)
        self.start_shim()
        self.wait_for_transition(self.primary.host, "up")
        self.wait_for_transition(self.backup.host, "up")

        self.primary.pause()
        image_id, took = self.pull(first[0])
        self.report("first pull with the primary paused", took)
        self.assertEqual(image_id, first[2].config_digest)
        self.assertLess(took, PROBE_TIMEOUT + 1.0)
        waited = self.wait_for_transition(self.primary.host, "down")
        self.report("primary paused -> down line after that pull", waited)
        reason = _transition_pattern(self.primary.host, "up", "down").search(
            self.node.shim_log()).group(3)
        self.assertEqual(reason, "no answer within 1s")
        for name, _, on_backup in images:
            image_id, took = self.pull(name)
            self.report("pull {} with the primary paused and down".format(name), took)
            self.assertEqual(image_id, on_backup.config_digest)
            self.assertLess(took, FAST_PULL)

        self.assertTransitions(self.primary.host, [("unknown", "up"), ("up", "down")])
        self.assertTransitions(self.backup.host, [("unknown", "up")])
        self.assertCleanLog()

    def test_restarted_primary_serves_again(self):
        """
        After the primary is stopped (pulls go to the backup) and started
        again, the shim logs it up within the backoff, and lookups of fresh
        images go back to it.
        """
        self.node.start_sandbox()
        while_down, *after = self.push_fresh(3)
        self.start_shim()
        self.wait_for_transition(self.primary.host, "up")

        self.primary.stop()
        self.assertEqual(self.pull(while_down[0])[0], while_down[2].config_digest)
        self.wait_for_transition(self.primary.host, "down")

        self.primary.start()
        waited = self.wait_for_transition(self.primary.host, "up", previous="down")
        self.report("primary restarted -> up line", waited)
        for name, on_primary, _ in after:
            image_id, took = self.pull(name)
            self.report("pull {} with the primary up again".format(name), took)
            self.assertEqual(image_id, on_primary.config_digest)

        self.assertTransitions(self.primary.host,
                               [("unknown", "up"), ("up", "down"), ("down", "up")])
        self.assertTransitions(self.backup.host, [("unknown", "up")])
        self.assertCleanLog()


class RecoveryTests(_FailoverTestsMixin, unittest.SynchronousTestCase):
    """
    When the primary is up again, the rewrites decided while it was down
    (cached, to the backup) are dropped: pulls go back to it at once.
    """

    def test_back_to_primary_when_up(self):
        """
        The primary is stopped; an image looked up meanwhile goes to the
        backup (and is cached there), and so does one looked up last, just
        before the primary is started again.  Once the shim logs the
        primary up, the next pulls of both images go to the primary, within
        1 s of that line.
        """
        self.node.start_sandbox()
        early, late = self.push_fresh(2)
        self.start_shim()
        self.wait_for_transition(self.primary.host, "up")

        self.primary.stop()
        for name, _, on_backup in (early, late):
            self.assertEqual(self.pull(name)[0], on_backup.config_digest)
            self.remove(name)
        self.wait_for_transition(self.primary.host, "down")
        explained = ctl.ask(self.node.admin, "GET", "/explain?image=" + early[0])
        self.assertIsNotNone(explained["cached"])

        self.primary.start()
        self.wait_for_transition(self.primary.host, "up", previous="down")
        marked_up = time.monotonic()
        for name, on_primary, _ in (early, late):
            image_id, took = self.pull(name)
            self.report("pull {} once the primary is up again".format(name), took)
            self.assertEqual(image_id, on_primary.config_digest)
        since = time.monotonic() - marked_up
        self.report("primary up line -> both pulls served by it", since)
        self.assertLess(since, 1.0)
        self.assertIn("cached rewrites passed over {}, up again".format(self.primary.host),
                      self.node.shim_log())
        self.assertTransitions(self.primary.host,
                               [("unknown", "up"), ("up", "down"), ("down", "up")])
        self.assertCleanLog()


class PullFailoverTests(_FailoverTestsMixin, unittest.SynchronousTestCase):
    """
    A pull the runtime cannot make from the chosen registry fails over to
    the next one within the same PullImage.
    """

    def test_cached_registry_unreachable_at_pull(self):
        """
        A rewrite to the primary is cached by a first pull; the primary is
        stopped before the health checker would notice (its interval is a
        minute).  The next PullImage of that image uses the cached rewrite,
        containerd cannot connect, and the same call fails over: it returns
        the backup's image, and the shim marks the primary down at once.
        """
        self.node.start_sandbox()
        [(name, on_primary, on_backup)] = self.push_fresh(1)
        self.start_shim(extra="probeTimeout: 1s\n"
                              "healthCheck: {interval: 60s, timeout: 1s, failureThreshold: 2}\n")
        self.wait_for_transition(self.primary.host, "up")
        self.assertEqual(self.pull(name)[0], on_primary.config_digest)
        self.remove(name)

        self.primary.stop()
        self.assertEqual(transitions(self.node.shim_log(), self.primary.host),
                         [("unknown", "up")])
        image_id, took = self.pull(name)
        self.report("pull failing over within one PullImage", took)
        self.assertEqual(image_id, on_backup.config_digest)

        log = self.node.shim_log()
        self.assertRegex(log, r"PullImage {} from {} failed \(\w+: .*connection refused".format(
            re.escape(name), re.escape(self.primary.host)))
        self.assertRegex(log, r"PullImage {} -> {}/library/\S+ \(registry={}, ".format(
            re.escape(name), re.escape(self.backup.host), re.escape(self.backup.host)))
        self.assertTransitions(self.primary.host, [("unknown", "up"), ("up", "down")])
        reason = _transition_pattern(self.primary.host, "up", "down").search(log).group(3)
        self.assertTrue(reason.startswith("pull failed: "), reason)
        self.assertTransitions(self.backup.host, [("unknown", "up")])
        self.assertCleanLog()

    def test_failed_pull_drops_cached_rewrite(self):
        """
        When a pull fails on the only registry holding the image (here its
        config blob is gone, while its manifest still answers the lookup),
        the rewrite to it is no longer cached after the call: the next pull
        looks the image up again instead of going back to it for the cache's
        whole time-to-live.
        """
        self.node.start_sandbox()
        image = self.primary.push_image("library/broken", "1", content=b"broken")
        digest = image.config_digest.split(":", 1)[1]
        os.remove(os.path.join(self.primary.directory, "data", "docker", "registry", "v2",
                               "blobs", "sha256", digest[:2], digest, "data"))
        self.start_shim()
        with self.assertRaises(grpc.RpcError):
            self.pull("broken:1")
        log = self.node.shim_log()
        self.assertRegex(log, r"PullImage broken:1 from {} failed".format(
            re.escape(self.primary.host)))
        explained = ctl.ask(self.node.admin, "GET", "/explain?image=broken:1")
        self.assertIsNone(explained["cached"], log)

    def test_cached_registry_hangs_at_pull(self):
        """
        A rewrite to the primary is cached by a first pull; then the primary
        freezes (SIGSTOP).  The next PullImage of that image uses the cached
        rewrite and containerd's pull hangs on the frozen registry; once the
        health checker logs the primary down (within a few seconds), the
        pull should be abandoned and served by the backup, well before the
        caller's deadline.
        """
        self.node.start_sandbox()
        [(name, on_primary, on_backup)] = self.push_fresh(1)
        self.start_shim()
        self.wait_for_transition(self.primary.host, "up")
        self.assertEqual(self.pull(name)[0], on_primary.config_digest)
        self.remove(name)

        self.primary.pause()
        try:
            image_id, took = self.pull(name, timeout=HUNG_PULL_DEADLINE)
        except grpc.RpcError as e:
            self.fail("the pull hung on the frozen primary ({}: {}) although the shim "
                      "marked it down meanwhile:\n{}".format(e.code(), e.details(),
                                                           self.node.shim_log()))
        self.report("pull failing over from a frozen registry", took)
        self.assertEqual(image_id, on_backup.config_digest)
        self.assertIn("registry {} was found down during the pull".format(self.primary.host),
                      self.node.shim_log())


class AllowUpstreamTests(_FailoverTestsMixin, unittest.SynchronousTestCase):
    """
    C{allowUpstream: false}: an image no configured registry holds is
    refused by the shim, never pulled from the registry it names.
    """

    def test_refused_without_runtime_call(self):
        """
        Pulling an image neither registry holds fails at once with
        NOT_FOUND, whose details name the image and both registries asked;
        the shim logs the refusal, and containerd, which logs every
        PullImage it is sent, never sees that image's name.
        """
        self.node.start_sandbox()
        [(present, on_primary, _)] = self.push_fresh(1)
        self.start_shim(extra=HEALTH + "allowUpstream: false\n")
        self.wait_for_transition(self.primary.host, "up")
        self.wait_for_transition(self.backup.host, "up")

        # Containerd logs the PullImage calls it gets: the check below means
        # something.
        self.assertEqual(self.pull(present)[0], on_primary.config_digest)
        containerd_log = self.containerd_log()
        self.assertIn('PullImage \\"{}/library/{}\\"'.format(self.primary.host, present),
                      containerd_log)

        started = time.monotonic()
        with self.assertRaises(grpc.RpcError) as caught:
            self.pull("nothere:v9")
        took = time.monotonic() - started
        self.report("refused pull", took)
        error = caught.exception
        self.assertEqual(error.code(), grpc.StatusCode.NOT_FOUND, error.details())
        details = error.details()
        self.assertIn("nothere:v9", details)
        self.assertIn(self.primary.host, details)
        self.assertIn(self.backup.host, details)
        self.assertIn("allowUpstream", details)
        self.assertNotIn("failed to resolve", details)
        self.assertLess(took, REFUSAL_LIMIT)

        self.assertIn("PullImage nothere:v9 refused", self.node.shim_log())
        self.assertNotIn("nothere", self.containerd_log())
        self.assertTransitions(self.primary.host, [("unknown", "up")])
        self.assertTransitions(self.backup.host, [("unknown", "up")])
        self.assertCleanLog()

    def containerd_log(self):
        with open(self.node.containerd.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()
