"""
End-to-end tests of live configuration: the shim as a real C{twistd -n
image-cri-shim} process (real containerd, real docker-registry processes,
see L{tests.e2e_support}) picking up changes to its config file on its
C{reloadInterval} timer and on SIGHUP, and syncing the cluster-wide
settings from a ConfigMap served by a real HTTPS server.

The API server is L{cri_shim.testing.FakeAPIServer} over TLS in this
process, on the test's (real) reactor, with certificates made for the test
(a CA and a certificate for 127.0.0.1); the shim finds it through a
kubeconfig given in C{$KUBECONFIG}, with C{$HOME} pointing to an empty
folder and the in-cluster variables removed from its environment.  Because
that server runs on the reactor, the tests never block it while they wait:
every gRPC call runs in a thread (L{deferToThread}) and every wait is a
bounded poll with L{deferLater} (L{wait_until}).

Times to effect (from the change to the first pull that shows it) are
written to trial's log (C{test.log}) as C{TIME-TO-EFFECT} lines; with
C{DUMP_SHIM_LOG=1} in the environment, each shim's whole output is written
there too.

Trial does not call C{setUpClass}: each test makes its own sandbox in
C{setUp} and removes it with C{addCleanup}.
"""

import base64
import os
import signal
import stat
import time

import grpc
import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, returnValue
from twisted.internet.ssl import PrivateCertificate
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.python import log as twisted_log
from twisted.trial import unittest
from twisted.web.server import Site

from cri_shim.sync import kube
from cri_shim.testing import FakeAPIServer, make_ca, make_cert
from tests.e2e_support import (
    ALICE, BOB, CALL_TIMEOUT, CLEAN_STOP_STATUSES, SHIM_START_TIMEOUT, SHUT_DOWN_LINE,
    ShimNode, basic_token, skip_reason)
from tests.fault_support import patch_shim_module

#: The C{reloadInterval} of the tests that wait for the timer, in seconds,
#: and as written in the config.
INTERVAL = 1.0
RELOAD_EVERY_SECOND = "reloadInterval: 1s\n"
#: A change must show within two intervals; this much more is allowed for
#: the HTTPS request, the write and the pull that observes it.
SLACK = 1.0
#: How long SIGHUP may take to apply a change.
SIGHUP_LIMIT = 1.5
POLL = 0.1

NAMESPACE = "kube-system"
NAME = "image-cri-shim"
KEY = "registries.yaml"
WHERE = "{}/{}".format(NAMESPACE, NAME)
#: The user the kubeconfig names.
KUBE_USER = "shim-node"
#: What the shim logs once per rejected config file.
REJECTED = "is not valid; the last good configuration keeps running"
#: The second registry's password as the tests get it wrong (colons too).
WRONG_BOB = ("bob", "wr:o:ng-pw")


def cluster_skip_reason():
    """
    :return: why the ConfigMap tests cannot control which API server the
        shim finds, or C{None}.
    """
    for path in kube.KUBECONFIGS + (kube.SERVICE_ACCOUNT,):
        if os.path.exists(path):
            return "{} exists on this machine: the shim could find a real cluster".format(path)
    return None


@inlineCallbacks
def wait_until(predicate, timeout, what, in_thread=False):
    """
    Call C{predicate} every L{POLL} seconds, without blocking the reactor,
    until it returns something true.

    :param predicate: a callable; cheap unless C{in_thread}.
    :param timeout: seconds after which to give up.
    :param what: what is awaited, for the failure message; a callable is
        called for the message (e.g. to show the shim's log).
    :param in_thread: call C{predicate} in a thread (it blocks: a gRPC call).
    :return: a Deferred firing with the seconds waited.
    :raise AssertionError: after C{timeout}.
    """
    started = time.monotonic()
    while True:
        if in_thread:
            done = yield deferToThread(predicate)
        else:
            done = predicate()
        elapsed = time.monotonic() - started
        if done:
            returnValue(elapsed)
        if elapsed > timeout:
            raise AssertionError("not after {:.1f} s: {}".format(
                elapsed, what() if callable(what) else what))
        yield deferLater(reactor, POLL, lambda: None)


def sleep(seconds):
    """
    :return: a Deferred firing after C{seconds}, the reactor running.
    """
    return deferLater(reactor, seconds, lambda: None)


class _TrackingSite(Site):
    """
    A L{Site} that knows its open connections, so that a test can close
    them and wait for them to go (trial fails a test that leaves any).
    """

    noisy = False

    def __init__(self, resource):
        Site.__init__(self, resource)
        self.channels = set()
        self.lost = []

    def buildProtocol(self, addr):
        channel = Site.buildProtocol(self, addr)
        lost = Deferred()
        self.lost.append(lost)
        self.channels.add(channel)
        connection_lost = channel.connectionLost

        def closed(reason):
            self.channels.discard(channel)
            try:
                connection_lost(reason)
            finally:
                lost.callback(None)
        channel.connectionLost = closed
        return channel

    def log(self, request):
        # No access log line per poll in test.log.
        pass


class _LiveConfigCase(unittest.TestCase):
    """
    A sandbox node, the fake API server over HTTPS and a kubeconfig naming
    it, per test.

    :ivar node: the L{ShimNode}.
    :ivar apiserver: the L{FakeAPIServer}.
    :ivar token: the bearer token it requires.
    :ivar secrets: every password and token the test used (the check at
        the end of each test looks for them in the shim's log).
    """

    timeout = 60

    def setUp(self):
        reason = skip_reason() or cluster_skip_reason()
        if reason is not None:
            raise unittest.SkipTest(reason)
        self.token = "apiserver-token-" + os.urandom(12).hex()
        self.secrets = [self.token, WRONG_BOB[1], basic_token(*WRONG_BOB)]
        self.node = ShimNode()
        self.addCleanup(self.node.cleanup)
        # These tests poll the ConfigMap every INTERVAL: without the floor
        # that keeps a cluster's nodes from flooding its API server (10 s;
        # tests.security.test_hardening_sync checks it).
        patch_shim_module(self.node, "cri_shim.sync.configmap", "MIN_POLL_INTERVAL", 0.0)
        directory = self.node.sandbox.directory
        home = os.path.join(directory, "home")
        os.mkdir(home)
        self.kubeconfig = os.path.join(directory, "kubeconfig")
        self.node.environment.update({
            "KUBECONFIG": self.kubeconfig,
            "HOME": home,
            "KUBERNETES_SERVICE_HOST": None,
            "KUBERNETES_SERVICE_PORT": None,
        })
        self.apiserver = FakeAPIServer(token=self.token, clock=reactor)
        self.apiserver.bookmark_interval = INTERVAL
        self.server = self.serve_api(self.apiserver)
        self.write_kubeconfig(self.token)
        self.node.start_sandbox()
        self.offline = self.node.offline
        self.second = self.node.second
        self.process = None
        self.client = None

    # -- the API server --------------------------------------------------------

    def serve_api(self, resource):
        """
        Serve C{resource} over HTTPS on 127.0.0.1, with a certificate for
        that address issued by a CA made here (L{ca_pem}).

        :return: its URL.
        """
        ca = make_ca()
        self.ca_pem = ca[0]
        certificate = make_cert(ca, sans=["127.0.0.1"])
        options = PrivateCertificate.loadPEM(certificate[0] + certificate[1]).options()
        site = _TrackingSite(resource)
        port = reactor.listenSSL(0, site, options, interface="127.0.0.1")

        @inlineCallbacks
        def stop():
            # The shim first, so that it does not connect again.
            try:
                yield deferToThread(self.node.stop_shim)
            finally:
                yield port.stopListening()
                for channel in list(site.channels):
                    channel.transport.abortConnection()
                yield DeferredList(site.lost)
        self.addCleanup(stop)
        return "https://127.0.0.1:{}".format(port.getHost().port)

    def write_kubeconfig(self, token):
        """
        Write the kubeconfig the shim is given: the API server, trusted
        through the test CA only, and a user with C{token}.
        """
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {
                "server": self.server,
                "certificate-authority-data": base64.b64encode(self.ca_pem).decode("ascii"),
            }}],
            "users": [{"name": KUBE_USER, "user": {"token": token}}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox",
                                                          "user": KUBE_USER}}],
            "current-context": "sandbox",
        }
        fd = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yaml.safe_dump(document, f)

    def set_configmap(self, text):
        """
        Create or change the ConfigMap's C{registries.yaml}.
        """
        self.apiserver.set_configmap(NAMESPACE, NAME, {KEY: text})

    def second_entry(self, login=BOB, priority=None):
        """
        :return: the ConfigMap's C{registries.yaml} (the Go shim's schema)
            listing the second registry with C{login} and C{priority}.
        """
        entry = {"address": self.second.url,
                 "auth": {"username": login[0], "password": login[1]}}
        if priority is not None:
            entry["priority"] = priority
        return yaml.safe_dump({"registries": [entry]}, sort_keys=False)

    # -- the shim ----------------------------------------------------------------

    def config(self, extra=RELOAD_EVERY_SECOND, **options):
        """
        :return: the shim's YAML (L{ShimNode.config_text} options), reloaded
            every second unless C{extra} says otherwise.
        """
        return self.node.config_text(extra=extra, **options)

    def write_file(self, text):
        """
        Replace the config file as an editor that saves by rename does: the
        shim reads the old content or the new, never a half-written file.
        """
        temporary = self.node.config_path + ".edit"
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, self.node.config_path)

    @inlineCallbacks
    def start(self, text):
        """
        Write the config file, start the shim (from the main thread: the
        sandbox's children die with the thread that started them) and wait,
        without blocking the reactor, until it serves.
        """
        self.node.write_config(text)
        self.process = self.node.spawn_shim()

        def serving():
            if self.process.poll() is not None:
                raise AssertionError("the shim exited with status {}:\n{}".format(
                    self.process.returncode, self.node.shim_log()))
            return self.node.serving()
        yield wait_until(serving, SHIM_START_TIMEOUT, self.node.shim_log)
        self.client = self.node.client("runtime.v1")

    def assertSameProcess(self):
        """
        The shim was never restarted and still runs.
        """
        self.assertIs(self.node.process, self.process)
        self.assertIsNone(self.process.poll(), self.node.shim_log())

    # -- calls -------------------------------------------------------------------

    def _pull(self, name):
        api = self.client.api
        return self.client.PullImage(api.PullImageRequest(image=self.client.image(name)),
                                     timeout=CALL_TIMEOUT).image_ref

    def pull(self, name):
        """
        :return: a Deferred firing with the image ID the pull of C{name}
            through the shim gave.
        """
        return deferToThread(self._pull, name)

    def pull_result(self, name):
        """
        :return: a Deferred firing with the image ID, or the C{grpc.RpcError}
            the pull failed with.
        """
        def attempt():
            try:
                return self._pull(name)
            except grpc.RpcError as e:
                return e
        return deferToThread(attempt)

    def version(self):
        api = self.client.api
        return deferToThread(self.client.Version, api.VersionRequest(), timeout=CALL_TIMEOUT)

    @inlineCallbacks
    def wait_for_pull(self, name, image_id, timeout, what):
        """
        Pull C{name} through the shim until it gives C{image_id}.

        :return: a Deferred firing with the seconds it took.
        """
        seen = []

        def pulled():
            try:
                result = self._pull(name)
            except grpc.RpcError as e:
                result = "{}: {}".format(e.code(), e.details())
            seen[:] = [result]
            return result == image_id
        elapsed = yield wait_until(pulled, timeout, lambda: "{}: {} gave {}, not {}\n{}".format(
            what, name, seen[0] if seen else "nothing", image_id, self.node.shim_log()),
            in_thread=True)
        returnValue(elapsed)

    # -- the log -------------------------------------------------------------------

    def count(self, phrase):
        """
        :return: how many lines of the shim's log hold C{phrase}.
        """
        return sum(phrase in line for line in self.node.shim_log().splitlines())

    def wait_for_log(self, phrase, count=1, timeout=5.0):
        """
        Wait until C{phrase} is in C{count} lines of the shim's log.
        """
        return wait_until(lambda: self.count(phrase) >= count, timeout,
                          lambda: "{!r} in {} lines of the log:\n{}".format(
                              phrase, count, self.node.shim_log()))

    @inlineCallbacks
    def polls(self, number):
        """
        Wait until the API server has answered C{number} more requests or
        sent as many bookmarks on the shim's watch (one every L{INTERVAL}):
        the sync has been live that long.
        """
        target = self.apiserver.requests + self.apiserver.bookmarks + number
        yield wait_until(lambda: self.apiserver.requests + self.apiserver.bookmarks >= target,
                         number * INTERVAL + 5.0,
                         lambda: "{} more ConfigMap polls".format(number))

    def report(self, what, seconds):
        """
        Record a measured time to effect in trial's log.
        """
        twisted_log.msg("TIME-TO-EFFECT {}.{}: {}: {:.3f} s".format(
            type(self).__name__, self._testMethodName, what, seconds))

    def local_document(self):
        with open(self.node.config_path, "rb") as f:
            return yaml.safe_load(f)

    def second_in_file(self):
        """
        :return: the second registry's entry in the local file.
        """
        for entry in self.local_document().get("registries") or ():
            if entry.get("address") == self.second.url:
                return entry
        return {}

    @inlineCallbacks
    def assertStopsCleanlyWithoutSecrets(self):
        """
        Stop the shim: it must stop cleanly, and its whole output must hold
        no password or token from any config file, ConfigMap or kubeconfig
        (nor any base64 C{user:password}).
        """
        status = yield deferToThread(self.node.stop_shim)
        output = self.node.shim_log()
        if os.environ.get("DUMP_SHIM_LOG"):
            twisted_log.msg("SHIM LOG of {}:\n{}".format(self._testMethodName, output))
        self.assertIn(status, CLEAN_STOP_STATUSES, output)
        self.assertIn(SHUT_DOWN_LINE, output)
        secrets = self.node.secrets() + self.secrets
        for secret in secrets:
            self.assertNotIn(secret, output)
        returnValue(output)


class ConfigMapSyncTests(_LiveConfigCase):
    """
    The ConfigMap's settings merged into the local file and applied, the
    shim never restarted.
    """

    @inlineCallbacks
    def test_configmap_changes_priorities(self):
        """
        Both registries hold C{library/nginx:latest}, with different content.
        With the ConfigMap listing the second registry at the default
        priority (in sync with the local file, which it leaves alone), the
        offline registry supplies the image; once the ConfigMap gives the
        second registry priority 2000, within two reload intervals the same
        name (a rewrite the cache held: a new config empties the cache) is
        pulled from the second registry.  The local file then holds the new
        priority, has mode 0600, and the shim is the same process.
        """
        offline = self.offline.push_image("library/nginx", "latest", content=b"offline nginx")
        second = self.second.push_image("library/nginx", "latest", content=b"second nginx")
        self.assertNotEqual(offline.config_digest, second.config_digest)
        self.set_configmap(self.second_entry())
        text = self.config()
        yield self.start(text)

        yield self.wait_for_log("ConfigMap {} is in sync".format(WHERE))
        self.assertIn("ConfigMap sync uses {} as user {!r} (token) (from $KUBECONFIG ({}))".format(
            self.server, KUBE_USER, self.kubeconfig), self.node.shim_log())
        with open(self.node.config_path, encoding="utf-8") as f:
            self.assertEqual(f.read(), text, "a ConfigMap in sync must not rewrite the file")
        self.assertEqual((yield self.pull("nginx:latest")), offline.config_digest)

        self.set_configmap(self.second_entry(priority=2000))
        changed = time.monotonic()
        written = yield wait_until(lambda: self.second_in_file().get("priority") == 2000,
                                   2 * INTERVAL + SLACK, self.node.shim_log)
        yield self.wait_for_pull("nginx:latest", second.config_digest, 2 * INTERVAL + SLACK,
                                 "the ConfigMap's priority")
        took = time.monotonic() - changed
        self.report("ConfigMap -> local file", written)
        self.report("ConfigMap -> pull from the new registry", took)
        self.assertLess(took, 2 * INTERVAL + SLACK)

        self.assertEqual(stat.S_IMODE(os.stat(self.node.config_path).st_mode), 0o600)
        document = self.local_document()
        self.assertEqual(document["address"], self.offline.url)
        self.assertEqual(document["shim"], self.node.socket)
        self.assertEqual(document["reloadInterval"], "1s")
        self.assertEqual(self.second_in_file(), {
            "address": self.second.url, "auth": "{}:{}".format(*BOB), "priority": 2000})
        self.assertIn("{}/library/nginx:latest".format(self.second.host),
                      self.node.containerd_images())
        self.assertSameProcess()
        self.assertEqual(self.count("merged into {}".format(self.node.config_path)), 1)
        yield self.assertStopsCleanlyWithoutSecrets()

    @inlineCallbacks
    def test_configmap_changes_credentials(self):
        """
        With wrong credentials for the second registry in the local file
        (and no ConfigMap yet), an image only that registry holds cannot be
        pulled; once a ConfigMap gives the right ones (a password with
        colons), within two reload intervals the pull succeeds.
        """
        image = self.second.push_image("only/second", "v1", content=b"second only")
        yield self.start(self.config(logins=[ALICE, WRONG_BOB]))
        yield self.wait_for_log("ConfigMap {} not found".format(WHERE))

        failed = yield self.pull_result("only/second:v1")
        self.assertIsInstance(failed, grpc.RpcError)
        self.assertEqual(self.second_in_file()["auth"], "{}:{}".format(*WRONG_BOB))

        self.set_configmap(self.second_entry(BOB))
        changed = time.monotonic()
        written = yield wait_until(
            lambda: self.second_in_file().get("auth") == "{}:{}".format(*BOB),
            2 * INTERVAL + SLACK, self.node.shim_log)
        yield self.wait_for_pull("only/second:v1", image.config_digest, 2 * INTERVAL + SLACK,
                                 "the ConfigMap's credentials")
        took = time.monotonic() - changed
        self.report("ConfigMap -> local file", written)
        self.report("ConfigMap -> pull with the new credentials", took)
        self.assertLess(took, 2 * INTERVAL + SLACK)

        self.assertEqual(stat.S_IMODE(os.stat(self.node.config_path).st_mode), 0o600)
        # The offline registry's login, which the ConfigMap does not set, is
        # kept as it was.
        self.assertEqual(self.local_document()["auth"], "{}:{}".format(*ALICE))
        self.assertSameProcess()
        yield self.assertStopsCleanlyWithoutSecrets()

    @inlineCallbacks
    def test_wrong_token(self):
        """
        With a kubeconfig whose token the API server refuses, the shim logs
        one error (not one per poll) naming its identity, where it came
        from, the ConfigMap and the 401; it keeps serving from the local
        file, which is left alone, and no token shows in its log.
        """
        wrong = "wrong-token-" + os.urandom(12).hex()
        self.secrets.append(wrong)
        self.write_kubeconfig(wrong)
        offline = self.offline.push_image("library/nginx", "latest", content=b"offline nginx")
        self.second.push_image("library/nginx", "latest", content=b"second nginx")
        # Were it read, it would move nginx to the second registry.
        self.set_configmap(self.second_entry(priority=2000))
        text = self.config()
        yield self.start(text)

        denied = "ConfigMap sync: user {!r} (token) (from $KUBECONFIG ({})) may not get " \
                 "configmap {}: 401".format(KUBE_USER, self.kubeconfig, WHERE)
        yield self.wait_for_log(denied)
        yield self.polls(3)
        self.assertEqual(self.count(denied), 1, self.node.shim_log())
        self.assertEqual(self.count("may not get configmap"), 1, self.node.shim_log())

        self.assertEqual((yield self.pull("nginx:latest")), offline.config_digest)
        with open(self.node.config_path, encoding="utf-8") as f:
            self.assertEqual(f.read(), text)
        self.assertSameProcess()
        yield self.assertStopsCleanlyWithoutSecrets()

    @inlineCallbacks
    def test_invalid_configmap_reported_once(self):
        """
        A ConfigMap change the shim must refuse (a priority that is not a
        number) is reported by one error naming the problem, and is not
        later claimed to be in sync, however many polls pass; the local file
        is left alone and pulls keep using the last good config.  The fixed
        ConfigMap is applied within two reload intervals.
        """
        offline = self.offline.push_image("library/nginx", "latest", content=b"offline nginx")
        second = self.second.push_image("library/nginx", "latest", content=b"second nginx")
        self.set_configmap(self.second_entry())
        text = self.config()
        yield self.start(text)
        in_sync = "ConfigMap {} is in sync".format(WHERE)
        yield self.wait_for_log(in_sync)

        self.set_configmap(self.second_entry(priority="high"))
        not_applied = "ConfigMap {} (resourceVersion 102) not applied".format(WHERE)
        yield self.wait_for_log(not_applied, timeout=2 * INTERVAL + SLACK)
        yield self.polls(3)
        log = self.node.shim_log()
        self.assertEqual(self.count("not applied"), 1, log)
        self.assertIn("registries[0].priority: expected a whole number, got 'high'", log)
        self.assertEqual(
            self.count(in_sync), 1,
            "the refused ConfigMap is later said to be in sync:\n" + log)
        with open(self.node.config_path, encoding="utf-8") as f:
            self.assertEqual(f.read(), text)
        self.assertEqual((yield self.pull("nginx:latest")), offline.config_digest)

        self.set_configmap(self.second_entry(priority=2000))
        changed = time.monotonic()
        yield self.wait_for_pull("nginx:latest", second.config_digest, 2 * INTERVAL + SLACK,
                                 "the fixed ConfigMap")
        took = time.monotonic() - changed
        self.report("fixed ConfigMap -> pull from the new registry", took)
        self.assertLess(took, 2 * INTERVAL + SLACK)
        self.assertSameProcess()
        yield self.assertStopsCleanlyWithoutSecrets()

    @inlineCallbacks
    def test_no_secret_in_log(self):
        """
        With C{debug: true}, a ConfigMap setting both registries' logins
        (C{sealos.auth} and a C{registries:} entry), pulls from both, then a
        ConfigMap the shim must refuse (a user name with a colon, a password
        beside it), the shim's output holds no password and no token.
        """
        offline = self.offline.push_image("library/nginx", "latest", content=b"offline nginx")
        image = self.second.push_image("only/second", "v1", content=b"second only")
        refused_password = "refused-pw-" + os.urandom(6).hex()
        self.secrets.append(refused_password)
        # The local file starts with wrong logins for both; the ConfigMap
        # brings the right ones.
        self.set_configmap(yaml.safe_dump({
            "sealos": {"address": self.offline.url,
                       "auth": {"username": ALICE[0], "password": ALICE[1]}},
            "registries": [{"address": self.second.url,
                            "auth": {"username": BOB[0], "password": BOB[1]}}],
        }))
        yield self.start(self.config(logins=[("alice", "wr:o:ng-pw"), WRONG_BOB], debug=True))
        yield self.wait_for_log("merged into {}".format(self.node.config_path))
        self.assertEqual((yield self.pull("nginx:latest")), offline.config_digest)
        self.assertEqual((yield self.pull("only/second:v1")), image.config_digest)

        self.set_configmap(yaml.safe_dump({"registries": [{
            "address": self.second.url,
            "auth": {"username": "b:ob", "password": refused_password}}]}))
        yield self.wait_for_log("not applied; the last good config keeps running")
        self.assertIn("must not contain ':'", self.node.shim_log())
        self.assertSameProcess()
        output = yield self.assertStopsCleanlyWithoutSecrets()
        self.assertIn("PullImage", output)


class FileReloadTests(_LiveConfigCase):
    """
    Hand edits of the local file, applied on the timer or on SIGHUP; broken
    files never stop the shim.  The API server answers 404 for the
    ConfigMap.
    """

    @inlineCallbacks
    def test_hand_edit_applied(self):
        """
        While the ConfigMap does not exist the sync leaves the file byte for
        byte as it was (checked after several polls); a hand edit giving the
        second registry priority 2000 and its right credentials is then
        applied within two reload intervals: a pull of an image both hold
        comes from it, and one only it holds succeeds.
        """
        offline = self.offline.push_image("library/nginx", "latest", content=b"offline nginx")
        second = self.second.push_image("library/nginx", "latest", content=b"second nginx")
        only = self.second.push_image("only/second", "v1", content=b"second only")
        yield self.start(self.config(logins=[ALICE, WRONG_BOB]))
        with open(self.node.config_path, "rb") as f:
            before = f.read()
        status = os.stat(self.node.config_path)

        yield self.wait_for_log("ConfigMap {} not found".format(WHERE))
        yield self.polls(3)
        with open(self.node.config_path, "rb") as f:
            self.assertEqual(f.read(), before)
        after = os.stat(self.node.config_path)
        self.assertEqual((after.st_ino, after.st_mtime_ns, after.st_mode),
                         (status.st_ino, status.st_mtime_ns, status.st_mode))
        self.assertEqual(self.count("ConfigMap {} not found".format(WHERE)), 1)

        self.assertEqual((yield self.pull("nginx:latest")), offline.config_digest)
        self.assertIsInstance((yield self.pull_result("only/second:v1")), grpc.RpcError)

        self.write_file(self.config(priorities=[2000]))
        changed = time.monotonic()
        yield self.wait_for_pull("nginx:latest", second.config_digest, 2 * INTERVAL + SLACK,
                                 "the edited priority")
        took = time.monotonic() - changed
        self.report("hand edit -> pull from the new registry", took)
        self.assertLess(took, 2 * INTERVAL + SLACK)
        self.assertEqual((yield self.pull("only/second:v1")), only.config_digest)
        self.assertEqual(self.count("reloaded {} (timer)".format(self.node.config_path)), 1)
        self.assertSameProcess()
        yield self.assertStopsCleanlyWithoutSecrets()

    @inlineCallbacks
    def test_sighup(self):
        """
        With C{reloadInterval: 1h}, an edit is not applied by itself; SIGHUP
        applies it at once (within L{SIGHUP_LIMIT}), and the shim is still
        the same process, serving (the Go shim dies on SIGHUP).  A SIGHUP
        with nothing changed is noted and harmless.
        """
        offline = self.offline.push_image("library/nginx", "latest", content=b"offline nginx")
        second = self.second.push_image("library/nginx", "latest", content=b"second nginx")
        yield self.start(self.config(extra="reloadInterval: 1h\n"))
        self.assertEqual((yield self.pull("nginx:latest")), offline.config_digest)

        self.write_file(self.config(extra="reloadInterval: 1h\n", priorities=[2000]))
        yield sleep(2 * INTERVAL)
        self.assertEqual((yield self.pull("nginx:latest")), offline.config_digest,
                         "applied without SIGHUP")

        self.process.send_signal(signal.SIGHUP)
        sent = time.monotonic()
        yield self.wait_for_pull("nginx:latest", second.config_digest, SIGHUP_LIMIT,
                                 "the edit after SIGHUP")
        took = time.monotonic() - sent
        self.report("SIGHUP -> pull from the new registry", took)
        self.assertLess(took, SIGHUP_LIMIT)
        self.assertEqual(self.count("reloaded {} (SIGHUP)".format(self.node.config_path)), 1)

        self.process.send_signal(signal.SIGHUP)
        yield self.wait_for_log("SIGHUP: {} unchanged".format(self.node.config_path))
        self.assertSameProcess()
        self.assertEqual((yield self.version()).runtime_name, "containerd")
        yield self.assertStopsCleanlyWithoutSecrets()

    @inlineCallbacks
    def test_corrupt_file_keeps_last_good(self):
        """
        A file that is not YAML (a broken line holding a password), then one
        with a wrong type (C{timeout: soon}): each is reported by one error
        naming the problem, however many intervals pass, while pulls of new
        names keep using the last good config (its priority and
        credentials).  A fixed file is applied again.
        """
        apps = {}
        for tag in "1234":
            apps[tag] = (
                self.offline.push_image("library/app", tag, content=b"offline app " + tag.encode()),
                self.second.push_image("library/app", tag, content=b"second app " + tag.encode()))
        only = self.second.push_image("only/second", "v1", content=b"second only")
        only2 = self.second.push_image("only/second", "v2", content=b"second only 2")
        good = self.config(priorities=[2000])
        yield self.start(good)
        self.assertEqual((yield self.pull("app:1")), apps["1"][1].config_digest)

        # Broken YAML: an unclosed quote on the line with the password.
        self.write_file(good.replace("auth: {}:{}".format(*ALICE),
                                     'auth: "{}:{}'.format(*ALICE)) + "bad: [\n")
        yield self.wait_for_log(REJECTED, timeout=2 * INTERVAL + SLACK)
        yield sleep(3 * INTERVAL)
        self.assertEqual(self.count(REJECTED), 1, self.node.shim_log())
        self.assertIn("invalid YAML", self.node.shim_log())
        self.assertEqual((yield self.pull("app:2")), apps["2"][1].config_digest)
        self.assertEqual((yield self.pull("only/second:v1")), only.config_digest)

        # Valid YAML, a wrong value.
        self.write_file(good + "timeout: soon\n")
        yield self.wait_for_log(REJECTED, count=2, timeout=2 * INTERVAL + SLACK)
        yield sleep(3 * INTERVAL)
        log = self.node.shim_log()
        self.assertEqual(self.count(REJECTED), 2, log)
        self.assertIn("timeout:", log[log.rindex(REJECTED):])
        self.assertIn("soon", log[log.rindex(REJECTED):])
        self.assertEqual((yield self.pull("app:3")), apps["3"][1].config_digest)
        self.assertEqual((yield self.pull("only/second:v2")), only2.config_digest)

        # Fixed, with the default priorities: the offline registry wins again.
        self.write_file(self.config())
        changed = time.monotonic()
        yield self.wait_for_pull("app:4", apps["4"][0].config_digest, 2 * INTERVAL + SLACK,
                                 "the fixed file")
        self.report("fixed file -> pull from the offline registry", time.monotonic() - changed)
        self.assertEqual((yield self.pull("app:1")), apps["1"][0].config_digest)
        self.assertEqual(self.count(REJECTED), 2)
        self.assertSameProcess()
        yield self.assertStopsCleanlyWithoutSecrets()
