"""
Tests for L{cri_shim.sync.apiclient} and L{cri_shim.sync.cluster.ClientFiles}:
kubelet's client certificate followed as it rotates (issue 17, #6), against
a real HTTPS server in-process that requires a client certificate and notes
which one each request presents; the files read in a thread, bounded.
"""

import os
import threading
from functools import partial

import yaml
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks, succeed
from twisted.internet.ssl import Certificate, PrivateCertificate
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThreadPool
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseDone
from twisted.web.resource import Resource

from cri_shim.sync import cluster as kube_cluster
from cri_shim.sync import apiclient
from cri_shim.sync.apiclient import RotatingClient, http_for
from cri_shim.sync.kube import find_cluster
from cri_shim.testing import FakeReactor, make_ca, make_cert
from tests.sync.test_kube import CA, SERVER, _TrackingSite, b64

CLIENT_CA = make_ca("kubelet client CA")
OLD = make_cert(CLIENT_CA, common_name="system:node:old", organization="system:nodes")
NEW = make_cert(CLIENT_CA, common_name="system:node:new", organization="system:nodes")
PKI = "/var/lib/kubelet/pki"
CURRENT = PKI + "/kubelet-client-current.pem"


class _NodeAPI(Resource):
    """
    Notes the common name of the client certificate each request presents,
    and answers as C{answer(name)} says (C{(code, side effect or None)}).
    """

    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.seen = []
        self.answer = lambda name: (200, None)

    def render_GET(self, request):
        name = request.channel.transport.getPeerCertificate().get_subject().CN
        self.seen.append(name)
        code, effect = self.answer(name)
        if effect is not None:
            effect()
        request.setResponseCode(code)
        return b'{"kind": "Status"}' if code != 200 else b'{"kind": "ConfigMap"}'


class _Pool:
    """
    The reactor's thread pool, noting the thread each job runs in.
    """

    def __init__(self, pool):
        self._pool = pool
        self.threads = []

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        def job():
            self.threads.append(threading.get_ident())
            return f(*args, **kwargs)
        self._pool.callInThreadWithCallback(on_result, job)


class _FilesMixin:
    """
    A node tree: kubelet.conf naming C{kubelet-client-current.pem}, a
    symbolic link to one of the pairs kubelet wrote.
    """

    def make_tree(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.real(PKI))
        os.makedirs(self.real("/etc/kubernetes"))
        self.write("kubelet-client-old.pem", OLD[0] + OLD[1])
        self.write("kubelet-client-new.pem", NEW[0] + NEW[1])
        os.symlink("kubelet-client-old.pem", self.real(CURRENT))

    def real(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def write(self, name, data):
        with open(self.real(PKI + "/" + name), "wb") as f:
            f.write(data)

    def point_at(self, name):
        """
        Point the link at C{name}, as kubelet does: a new link renamed over.
        """
        temporary = self.real(PKI + "/.current.tmp")
        os.symlink(name, temporary)
        os.rename(temporary, self.real(CURRENT))

    def find(self, server):
        with open(self.real("/etc/kubernetes/kubelet.conf"), "w") as f:
            f.write(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
                "clusters": [{"name": "c", "cluster": {
                    "server": server, "certificate-authority-data": b64(CA[0])}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c",
                                                         "user": "default-auth"}}],
                "users": [{"name": "default-auth", "user": {
                    "client-certificate": CURRENT, "client-key": CURRENT}}],
            }))
        cluster, warnings = find_cluster({}, root=self.root)
        self.assertEqual(warnings, [])
        return cluster


class RotationTests(_FilesMixin, TestCase):
    """
    The next request after the files change presents the new certificate.
    """

    timeout = 20

    def setUp(self):
        self.make_tree()
        self.api = _NodeAPI()
        private = PrivateCertificate.loadPEM(SERVER[0] + SERVER[1])
        site = _TrackingSite(self.api)
        port = reactor.listenSSL(0, site, private.options(Certificate.loadPEM(CLIENT_CA[0])),
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: DeferredList(site.lost))
        self.cluster = self.find("https://127.0.0.1:{}".format(port.getHost().port))
        self.pool = _Pool(reactor.getThreadPool())
        self.http = http_for(reactor, self.cluster, self.pool)
        self.assertIsInstance(self.http, RotatingClient)
        self.addCleanup(self.http.pool.closeCachedConnections)

    @inlineCallbacks
    def get(self):
        response = yield self.http.get(self.cluster.server + "/api/v1/namespaces/x/configmaps",
                                       headers=self.cluster.headers())
        yield response.content()
        return response.code

    @inlineCallbacks
    def test_next_request_presents_new_certificate(self):
        """
        After kubelet points the link at a new pair, the next request
        presents it, although the connection of the last one was kept; the
        files are read in the thread pool, never on the reactor.
        """
        codes = [(yield self.get()), (yield self.get())]
        self.point_at("kubelet-client-new.pem")
        with capturedLogs() as captured:
            codes.append((yield self.get()))
        codes.append((yield self.get()))
        self.assertEqual(codes, [200] * 4)
        self.assertEqual(self.api.seen, ["system:node:old"] * 2 + ["system:node:new"] * 2)
        [changed] = [e for e in captured if "changed" in e["log_format"]]
        self.assertEqual(changed["subject"], "CN=system:node:new, O=system:nodes")
        self.assertTrue(self.pool.threads)
        self.assertNotIn(threading.get_ident(), self.pool.threads)

    @inlineCallbacks
    def test_401_reads_again_and_retries(self):
        """
        Kubelet rotates while a request is under way, and the API server no
        longer takes the old certificate (401): the files are read again and
        the request is sent once more, with the new one.
        """
        self.api.answer = lambda name: (
            (401, partial(self.point_at, "kubelet-client-new.pem")) if name.endswith("old")
            else (200, None))
        self.assertEqual((yield self.get()), 200)
        self.assertEqual(self.api.seen, ["system:node:old", "system:node:new"])

    @inlineCallbacks
    def test_401_unchanged_returned(self):
        """
        A 401 with the files unchanged is the caller's to handle: no second
        request.
        """
        self.api.answer = lambda name: (401, None)
        self.assertEqual((yield self.get()), 401)
        self.assertEqual(self.api.seen, ["system:node:old"])

    @inlineCallbacks
    def test_unusable_files_keep_last_pair(self):
        """
        A link to a FIFO (refused, never waited on), to a missing file or to
        garbage: the last pair read stays in use, with one warning; a usable
        pair is taken again.
        """
        os.mkfifo(self.real(PKI + "/fifo.pem"))
        self.write("garbage.pem", b"not a certificate")
        with capturedLogs() as captured:
            for name in ("fifo.pem", "missing.pem", "garbage.pem"):
                self.point_at(name)
                self.assertEqual((yield self.get()), 200)
        self.assertEqual(self.api.seen, ["system:node:old"] * 3)
        [warning] = [e for e in captured if e["log_level"] == LogLevel.warn]
        self.assertEqual(warning["problem"], "client-certificate {}: not a regular "
                         "file".format(CURRENT))
        self.point_at("kubelet-client-new.pem")
        self.assertEqual((yield self.get()), 200)
        self.assertEqual(self.api.seen[-1], "system:node:new")


class _Response:
    """
    A response whose body, C{body}, is delivered at once, unless its reader
    stops the transport.
    """

    def __init__(self, code, body=b""):
        self.code = code
        self.length = len(body)
        self.body = body
        self.transport = StringTransport()

    def deliverBody(self, protocol):
        protocol.makeConnection(self.transport)
        protocol.dataReceived(self.body)
        if self.transport.producerState != "stopped":
            protocol.connectionLost(Failure(ResponseDone()))


class _Fakes:
    """
    The client's HTTP client, pool and files: C{responses} answer the
    requests in turn; C{changed} answers the checks of the files in turn.
    """

    def __init__(self, responses, changed):
        self.responses = list(responses)
        self.changed = list(changed)
        self.requests = []
        self.checks = []
        self.closed = 0

    def request(self, method, url, **kwargs):
        self.requests.append((method, url, kwargs))
        return succeed(self.responses.pop(0))

    def refresh(self, run, force=False):
        self.checks.append((run, force))
        return succeed(self.changed.pop(0))

    def closeCachedConnections(self):
        self.closed += 1


class RotatingClientTests(SynchronousTestCase):
    """
    L{RotatingClient} with a fake HTTP client and files.
    """

    def client(self, responses, changed):
        self.fakes = _Fakes(responses, changed)
        return RotatingClient(self.fakes, self.fakes, self.fakes, "run")

    def test_401_forces_a_read(self):
        """
        After a 401 the files are read even if they look unchanged (a
        forced check), and when that changes them the refusal is read, the
        idle connections closed and the request sent again, as it was.
        """
        refusal, answer = _Response(401, b"no"), _Response(200)
        http = self.client([refusal, answer], [False, True])
        self.assertIs(self.successResultOf(http.get("https://api/x", headers={"a": ["b"]})),
                      answer)
        self.assertEqual(self.fakes.checks, [("run", False), ("run", True)])
        self.assertEqual(self.fakes.requests, [("GET", "https://api/x", {"headers": {
            "a": ["b"]}})] * 2)
        self.assertEqual(self.fakes.closed, 1)
        self.assertEqual(refusal.transport.producerState, "producing")

    def test_401_refusal_read_capped(self):
        """
        Of a 401's body at most L{apiclient.MAX_REFUSAL} bytes are read; a
        longer one is cut off (its connection dropped), and the request is
        sent again all the same.
        """
        for size, state in [(apiclient.MAX_REFUSAL, "producing"),
                            (apiclient.MAX_REFUSAL + 1, "stopped")]:
            refusal, answer = _Response(401, b"x" * size), _Response(200)
            http = self.client([refusal, answer], [False, True])
            self.assertIs(self.successResultOf(http.request("POST", "https://api/y")), answer)
            self.assertEqual((refusal.transport.producerState, len(self.fakes.requests)),
                             (state, 2), size)
        self.assertEqual(apiclient.MAX_REFUSAL, 64 * 1024)


class ClientFilesTests(_FilesMixin, SynchronousTestCase):
    """
    L{kube_cluster.ClientFiles.refresh} with a thread pool the test drives.
    """

    def setUp(self):
        self.make_tree()
        self.files = self.find("https://127.0.0.1:6443").client_files
        self.reactor = FakeReactor()
        self.run = partial(deferToThreadPool, self.reactor, self.reactor.pool)

    def test_found(self):
        """
        A kubeconfig naming certificate files gives the cluster its
        L{kube_cluster.ClientFiles}, with the pair read.
        """
        self.assertEqual((self.files.cert_path, self.files.key_path),
                         (self.real(CURRENT), self.real(CURRENT)))
        self.assertEqual(self.files.pair, OLD)
        self.assertEqual(self.files.generation, 0)

    def test_one_check_at_a_time(self):
        """
        Callers while a check is in the thread share it; it is done in the
        pool, and only its outcome reaches the reactor.
        """
        self.reactor.pool.hold = True
        self.point_at("kubelet-client-new.pem")
        first = self.files.refresh(self.run)
        second = self.files.refresh(self.run)
        self.assertEqual(self.reactor.pool.calls, [kube_cluster._thd_read])
        self.assertNoResult(first)
        self.assertEqual(self.files.pair, OLD)
        self.reactor.pool.deliver()
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)),
                         (True, True))
        self.assertEqual((self.files.pair, self.files.generation), (NEW, 1))

    def test_unchanged_not_read(self):
        """
        Files whose inode, size and modification time did not change are
        not read again, unless forced (after a 401).
        """
        old, new = OLD[0] + OLD[1], NEW[0] + NEW[1]
        size = max(len(old), len(new))
        path = self.real(PKI + "/kubelet-client-old.pem")
        self.write("kubelet-client-old.pem", old.ljust(size, b"\n"))
        self.assertFalse(self.successResultOf(self.files.refresh(self.run)))
        status = os.stat(path)
        with open(path, "r+b") as f:
            f.write(new.ljust(size, b"\n"))
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
        self.assertFalse(self.successResultOf(self.files.refresh(self.run)))
        self.assertEqual(self.files.pair, OLD)
        self.assertTrue(self.successResultOf(self.files.refresh(self.run, force=True)))
        self.assertEqual(self.files.pair, NEW)

    def test_forced_after_a_check(self):
        """
        A forced read asked for while an unforced check is under way is
        made after it.
        """
        self.reactor.pool.hold = True
        self.files.refresh(self.run)
        forced = self.files.refresh(self.run, force=True)
        self.assertEqual(len(self.reactor.pool.calls), 1)
        self.reactor.pool.deliver()
        self.assertEqual(len(self.reactor.pool.calls), 2)
        self.assertNoResult(forced)
        self.reactor.pool.deliver()
        self.assertFalse(self.successResultOf(forced))

    def test_key_inline(self):
        """
        A certificate file with its key inline: the file is followed and
        checked against the key kept; one that does not match it is not
        taken, nor is the same pair read again a change.
        """
        with open(self.real("/etc/kubernetes/kubelet.conf")) as f:
            document = yaml.safe_load(f)
        document["users"][0]["user"] = {"client-certificate": PKI + "/cert.pem",
                                        "client-key-data": b64(OLD[1])}
        self.write("cert.pem", OLD[0])
        with open(self.real("/etc/kubernetes/kubelet.conf"), "w") as f:
            f.write(yaml.safe_dump(document))
        files = find_cluster({}, root=self.root)[0].client_files
        self.assertEqual((files.cert_path, files.key_path),
                         (self.real(PKI + "/cert.pem"), None))
        again = make_cert(CLIENT_CA, common_name="system:node:old")
        self.write("cert.pem", again[0])
        self.assertFalse(self.successResultOf(files.refresh(self.run)))
        self.assertEqual(files.pair, OLD)
        self.write("cert.pem", (b"\n" + OLD[0]))
        self.assertFalse(self.successResultOf(files.refresh(self.run)))

    def test_cancelled_caller(self):
        """
        A caller that gives up (a request's timeout) leaves the check to
        finish for the others.
        """
        self.reactor.pool.hold = True
        self.point_at("kubelet-client-new.pem")
        first = self.files.refresh(self.run)
        second = self.files.refresh(self.run)
        first.cancel()
        self.failureResultOf(first)
        self.reactor.pool.deliver()
        self.assertTrue(self.successResultOf(second))
