"""
Hardening of the shim's outbound clients (issue 12):

  - L{HeaderBoundTests} (#1): a server answering with an endless (or very
    long) header section is dropped after L{httputil.MAX_HEADER_BYTES} or
    L{httputil.MAX_HEADER_LINES}, for the registry probe, the health check
    and the API server client; a real TCP server on 127.0.0.1.
  - L{TLSFileTests} (#4): C{caFile}, C{certFile} and C{keyFile} are read only
    as regular files under a size cap, off the reactor, with errors naming
    the key; a FIFO does not freeze the reactor.
  - L{NodeLocalKeyTests} (#4): those keys and C{insecureSkipVerify} are
    refused from the ConfigMap, with a warning naming each.
  - L{TokenLifetimeTests} (#10): a token whose C{expires_in} is NaN,
    infinite or negative lives the default lifetime.
"""

import os
import shutil
import stat
import tempfile
import threading

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseFailed
from zope.interface import implementer

from cri_shim.model import config, merge, reference, schema
from cri_shim.registries import httputil, pem
from cri_shim.registries.health import DOWN, RegistryHealthChecker
from cri_shim.registries.probe import DEFAULT_TOKEN_SECONDS, ProbeError, Prober
from cri_shim.registries.tls import agent, read_registry_files, registry_policy
from cri_shim.snapshot import SnapshotHolder
from cri_shim.sync.apiclient import http_for
from cri_shim.sync.cluster import Cluster
from cri_shim.testing import FakeRegistries, FakeRegistry, make_ca, make_cert, registry_config

#: The hostile server stops by itself after this many bytes.
SERVER_LIMIT = 64 * 1024 * 1024
#: What a dropped connection may have cost: the bound plus what sat in the
#: two sockets' buffers.
SENT_BOUND = 8 * 1024 * 1024


@implementer(IPullProducer)
class _EndlessHeaders(Protocol):
    """
    Answers a request with a status line and then header lines without end,
    as fast as the client reads them (a pull producer), up to
    L{SERVER_LIMIT}.
    """

    _started = False

    def dataReceived(self, data):
        if not self._started:
            self._started = True
            self.transport.write(b"HTTP/1.1 200 OK\r\n")
            self.transport.registerProducer(self, False)

    def resumeProducing(self):
        if self.factory.sent >= SERVER_LIMIT:
            self.transport.unregisterProducer()
            self.transport.loseConnection()
            return
        self.factory.sent += len(self.factory.chunk)
        self.transport.write(self.factory.chunk)

    def stopProducing(self):
        pass

    def connectionLost(self, reason):
        self.factory.closed.callback(self.factory.sent)


class _ManyHeaders(Protocol):
    """
    Answers a request with a complete response of C{lines} tiny headers,
    well under the byte bound.
    """

    def dataReceived(self, data):
        self.transport.write(b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * self.factory.lines
                             + b"Content-Length: 0\r\n\r\n")
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.factory.closed.callback(None)


class HeaderBoundTests(TestCase):
    """
    Every outbound HTTP client drops a response whose header section passes
    the bound, and counts it as failing.
    """

    timeout = 60

    def serve(self, protocol, **attributes):
        """
        Listen on 127.0.0.1 with C{protocol}, for one connection.

        :return: C{(factory, port number)}; C{factory.closed} fires with the
            bytes sent when the connection is closed.
        """
        factory = Factory.forProtocol(protocol)
        factory.sent = 0
        factory.chunk = (b"X-Filler: " + b"a" * 100 + b"\r\n") * 160
        factory.closed = Deferred()
        factory.__dict__.update(attributes)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return factory, port.getHost().port

    def prober(self):
        holder = SnapshotHolder(config.Config(), reactor.seconds)
        pool = httputil.pool(reactor, persistent=False)
        return Prober(HTTPClient(agent(reactor, registry_policy(holder, reactor), pool)), reactor)

    def assertTooLarge(self, reason):
        self.assertIn("HeadersTooLarge", reason)

    @inlineCallbacks
    def test_probe_endless_headers(self):
        """
        A manifest HEAD answered with endless header lines fails with the
        bound as its reason (not the timeout), marks the registry
        unreachable, and the connection is dropped after a bounded number of
        bytes.
        """
        server, port = self.serve(_EndlessHeaders)
        registry = registry_config("http://127.0.0.1:{}".format(port))
        d = self.prober().has_manifest(
            registry, reference.parse("127.0.0.1:{}/a/b:1".format(port)), 30.0)
        error = yield self.assertFailure(d, ProbeError)
        self.assertTooLarge(error.reason)
        self.assertTrue(error.unreachable)
        sent = yield server.closed
        self.assertLess(sent, SENT_BOUND)

    @inlineCallbacks
    def test_many_short_lines(self):
        """
        A complete answer of 1,000 tiny header lines (6 KB, under the byte
        bound) is refused by the line bound.
        """
        server, port = self.serve(_ManyHeaders, lines=1000)
        registry = registry_config("http://127.0.0.1:{}".format(port))
        d = self.prober().has_manifest(
            registry, reference.parse("127.0.0.1:{}/a/b:1".format(port)), 30.0)
        error = yield self.assertFailure(d, ProbeError)
        self.assertTooLarge(error.reason)
        yield server.closed

    @inlineCallbacks
    def test_ordinary_headers_pass(self):
        """
        An answer with a few dozen headers is read as usual.
        """
        server, port = self.serve(_ManyHeaders, lines=40)
        registry = registry_config("http://127.0.0.1:{}".format(port))
        found = yield self.prober().has_manifest(
            registry, reference.parse("127.0.0.1:{}/a/b:1".format(port)), 30.0)
        self.assertIs(found, True)
        yield server.closed

    @inlineCallbacks
    def test_health_check(self):
        """
        A health check answered with endless headers counts as a failed
        check, with the bound as its reason (one failure is enough here).
        """
        server, port = self.serve(_EndlessHeaders)
        registry = registry_config("http://127.0.0.1:{}".format(port))
        holder = SnapshotHolder(config.Config(
            registries=(registry,), health=config.HealthCheck(failure_threshold=1)),
            reactor.seconds)
        http = HTTPClient(agent(reactor, registry_policy(holder, reactor),
                                httputil.pool(reactor, persistent=False)))
        checker = RegistryHealthChecker(holder, http, reactor)
        checker.startService()
        self.addCleanup(checker.stopService)
        sent = yield server.closed
        # The client failed the check before the server saw the close.
        yield deferLater(reactor, 0, lambda: None)
        health = checker.registries[registry.name]
        self.assertEqual((health.state, health.failures), (DOWN, 1))
        self.assertTooLarge(health.reason)
        self.assertLess(sent, SENT_BOUND)

    @inlineCallbacks
    def test_api_server(self):
        """
        The API server client, as the composition root builds it, drops an
        answer with endless headers.
        """
        server, port = self.serve(_EndlessHeaders)
        cluster = Cluster(server="http://127.0.0.1:{}".format(port), source="test",
                          identity="test")
        http = http_for(reactor, cluster)
        error = yield self.assertFailure(http.get(cluster.server + "/api/v1/x"), ResponseFailed)
        self.assertTrue(error.reasons[0].check(httputil.HeadersTooLarge), error.reasons)
        sent = yield server.closed
        self.assertLess(sent, SENT_BOUND)


class _Reactor:
    """
    Enough of a reactor for C{deferToThreadPool}.
    """

    def __init__(self, threadpool):
        self._threadpool = threadpool

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)

    def getThreadPool(self):
        return self._threadpool


class _ThreadPool:
    """
    Keeps the jobs it is given until the test runs them.
    """

    def __init__(self):
        self.jobs = []

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        self.jobs.append((on_result, f, args, kwargs))

    def run(self):
        on_result, f, args, kwargs = self.jobs.pop(0)
        on_result(True, f(*args, **kwargs))


class TLSFileTests(TestCase):
    """
    TLS files are read as small regular files only, in a thread.
    """

    timeout = 30

    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.ca = make_ca()
        cert, key = make_cert(self.ca, ["image-cri-shim"])
        self.files = {"caFile": self.write("ca.pem", self.ca[0]),
                      "certFile": self.write("cert.pem", cert),
                      "keyFile": self.write("key.pem", key)}

    def write(self, name, data):
        path = os.path.join(self.folder, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def fifo(self):
        """
        :return: a FIFO nobody writes to.  Should the code under test block
            in C{open()} on it, a writer comes after 10 seconds (so a
            failing test fails rather than hangs the reactor forever).
        """
        path = os.path.join(self.folder, "fifo")
        os.mkfifo(path)

        def unblock():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                return
            os.write(fd, b"junk")
            os.close(fd)
        timer = threading.Timer(10.0, unblock)
        timer.start()
        self.addCleanup(timer.cancel)
        return path

    def config(self, **files):
        lines = "registries:\n  - address: https://127.0.0.1:1\n"
        lines += "".join("    {}: {}\n".format(key, path) for key, path in files.items())
        return schema.load(lines.encode("utf-8"))[0]

    def probe(self, **files):
        """
        Probe a registry with the TLS files C{files} through the registries'
        client.

        :return: a Deferred firing with the ProbeError's reason.
        """
        loaded = self.config(**files)
        holder = SnapshotHolder(loaded, reactor.seconds)
        http = HTTPClient(agent(reactor, registry_policy(holder, reactor),
                                httputil.pool(reactor, persistent=False)))
        d = Prober(http, reactor).has_manifest(
            loaded.registries[0], reference.parse("127.0.0.1:1/a/b:1"), 20.0)
        return self.assertFailure(d, ProbeError).addCallback(lambda error: error.reason)

    @inlineCallbacks
    def test_fifo(self):
        """
        A FIFO as any of the three files is refused at once, naming the key;
        the reactor never waits on it.
        """
        fifo = self.fifo()
        for key in ("caFile", "certFile", "keyFile"):
            files = dict(self.files, **{key: fifo})
            reason = yield self.probe(**files)
            self.assertIn("{} {}: not a regular file".format(key, fifo), reason)

    @inlineCallbacks
    def test_device(self):
        """
        A device (C{/dev/null} here; C{/dev/zero} read until MemoryError) is
        refused, naming the key.
        """
        reason = yield self.probe(caFile="/dev/null")
        self.assertIn("caFile /dev/null: not a regular file", reason)

    @inlineCallbacks
    def test_size_cap(self):
        """
        A file over the cap is refused without being read whole, naming the
        key and the cap.
        """
        path = self.write("big.pem", self.ca[0] + b"#" * pem.MAX_FILE_BYTES)
        reason = yield self.probe(caFile=path)
        self.assertIn("caFile {}: larger than {} bytes".format(path, pem.MAX_FILE_BYTES),
                      reason)

    def test_read_in_a_thread(self):
        """
        The files are read by a job in the thread pool, not on the reactor:
        the connection creator is ready only when that job has run, and a
        registry with no files needs no job.
        """
        pool = _ThreadPool()
        loaded = self.config(**self.files)
        policy = registry_policy(SnapshotHolder(loaded, Clock().seconds), _Reactor(pool))
        d = policy.creator("127.0.0.1", 1)
        self.assertNoResult(d)
        [(_, job, _, _)] = pool.jobs
        self.assertIs(job, read_registry_files)
        pool.run()
        self.assertIsNotNone(self.successResultOf(d))
        self.successResultOf(policy.creator("other.example", 443))
        self.assertEqual(pool.jobs, [])

    def test_regular_file_mode(self):
        """
        The reader accepts what a CA file is: a regular file, even one only
        its owner may read.
        """
        path = self.files["caFile"]
        os.chmod(path, stat.S_IRUSR)
        self.assertEqual(pem.read_file(path, "caFile " + path), self.ca[0])


class NodeLocalKeyTests(SynchronousTestCase):
    """
    The ConfigMap cannot set a registry's TLS files or turn verification
    off.
    """

    def test_refused_with_warnings(self):
        """
        C{caFile}, C{certFile}, C{keyFile} and C{insecureSkipVerify} in a
        ConfigMap registry entry are dropped, each with a warning naming it;
        the node's own values for that registry are kept.
        """
        settings, notices = merge.read_cluster_settings(
            b"registries:\n"
            b"  - address: https://m.example\n"
            b"    caFile: /tmp/attacker-ca.pem\n"
            b"    certFile: /etc/kubernetes/pki/apiserver-kubelet-client.crt\n"
            b"    keyFile: /etc/kubernetes/pki/apiserver-kubelet-client.key\n"
            b"    insecureSkipVerify: true\n")
        local = {"registries": [{"address": "https://m.example", "caFile": "/etc/ca.pem"}]}
        merged, _ = merge.merge(local, settings)
        self.assertEqual(merged["registries"],
                         [{"address": "https://m.example", "caFile": "/etc/ca.pem"}])
        warnings = [notice.message for notice in notices if notice.level == "warn"]
        for key in ("caFile", "certFile", "keyFile", "insecureSkipVerify"):
            self.assertIn("registries[0].{}: node-local, set only in the node's config "
                          "file; ignored from the ConfigMap".format(key), warnings)


class TokenLifetimeTests(SynchronousTestCase):
    """
    A token's lifetime is a finite, non-negative number, or the default.
    """

    def test_unusable_lifetimes(self):
        """
        With C{expires_in} NaN, infinite or negative, the token is kept and
        reused for the default lifetime (less the margin), then asked for
        again.
        """
        for expires_in in (float("nan"), float("inf"), -5):
            clock = Clock()
            registries = FakeRegistries()
            fake = registries.add("hub.example", FakeRegistry(
                "bob", "bob-pw", scheme="bearer", realm="https://auth.example/token"))
            registries.add_token_service("auth.example", fake)
            fake.add(reference.parse("hub.example/library/nginx:latest"))
            fake.expires_in = expires_in
            http = StubTreq(registries)
            prober = Prober(http, clock)
            registry = registry_config("https://hub.example", "bob", "bob-pw")

            def probe():
                d = prober.has_manifest(registry,
                                        reference.parse("hub.example/library/nginx:latest"), 2)
                http.flush()
                self.assertIs(self.successResultOf(d), True)
                return len([seen for seen in fake.seen if seen[1] == "token"])

            self.assertEqual(probe(), 1, expires_in)
            clock.advance(DEFAULT_TOKEN_SECONDS - 11)
            self.assertEqual(probe(), 1, expires_in)
            clock.advance(2)
            self.assertEqual(probe(), 2, expires_in)
