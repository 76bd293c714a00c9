"""
Tests for L{cri_shim.ops.access}: the token file's checks, what a TCP
listener serves with and without the token, and the bound on open
connections.
"""

import os
import shutil
import tempfile

from treq.testing import StubTreq
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.ops import access
from cri_shim.ops.admin import AdminResource

TOKEN = "t0ken-for-the-admin-endpoint-9f3a"


class _State:
    """
    What L{AdminResource} reads and does, recording each answer it gives.
    """

    def __init__(self):
        self.done = []
        self.metrics = self

    def render(self):
        self.done.append("metrics")
        return b"metrics\n"

    def _answer(name):
        def answer(self, request):
            self.done.append(name)
            return "text/plain", name.encode("ascii") + b"\n"
        return answer

    ready = _answer("readyz")
    registries = _answer("registries")
    explain = _answer("explain")
    flush_cache = _answer("flush")
    reload = _answer("reload")


#: Every admin request, and what it does when it is served.
PUBLIC = [("GET", "/metrics", "metrics"), ("GET", "/healthz", None),
          ("GET", "/readyz", "readyz")]
PRIVATE = [("GET", "/registries", "registries"), ("GET", "/explain?image=nginx", "explain"),
           ("POST", "/cache/flush", "flush"), ("POST", "/reload", "reload")]


class TCPGuardTests(SynchronousTestCase):
    """
    L{access.TCPGuard} in front of the real L{AdminResource}.
    """

    def setUp(self):
        self.state = _State()

    def ask(self, token, method, path, authorization=None):
        stub = StubTreq(access.TCPGuard(AdminResource(self.state), token))
        headers = {} if authorization is None else {b"authorization": [authorization]}
        response = self.successResultOf(stub.request(method, "http://admin" + path,
                                                     headers=headers))
        return response, self.successResultOf(response.content())

    def test_without_token_only_read_only_pages(self):
        """
        Without a token, the read-only pages answer; the registries, explain
        and both actions are refused with 403 and nothing is done; so is
        any other path.
        """
        for method, path, done in PUBLIC:
            response, _ = self.ask(None, method, path)
            self.assertEqual(response.code, 200, path)
        self.assertEqual(self.state.done, ["metrics", "readyz"])
        for method, path, _ in PRIVATE + [("GET", "/", None), ("POST", "//reload", None),
                                          ("GET", "/cache", None)]:
            response, body = self.ask(None, method, path, b"Bearer " + TOKEN.encode())
            self.assertEqual(response.code, 403, path)
            self.assertIn(b"UNIX socket", body)
        self.assertEqual(self.state.done, ["metrics", "readyz"])

    def test_token_opens_the_rest(self):
        """
        With a token, the other requests need C{Authorization: Bearer
        <token>} (the scheme in any case): 401 with a Bearer challenge
        without it or with another token, served with it.
        """
        token = TOKEN.encode()
        for method, path, done in PRIVATE:
            for authorization in (None, b"Bearer wrong", b"Basic " + token, token,
                                  b"Bearer " + token[:-1]):
                response, _ = self.ask(token, method, path, authorization)
                self.assertEqual(response.code, 401, (path, authorization))
                self.assertEqual(response.headers.getRawHeaders(b"www-authenticate"),
                                 [b'Bearer realm="image-cri-shim"'])
        self.assertEqual(self.state.done, [])
        for method, path, done in PRIVATE:
            for authorization in (b"Bearer " + token, b"bearer " + token):
                response, _ = self.ask(token, method, path, authorization)
                self.assertEqual(response.code, 200, (path, authorization))
        self.assertEqual(self.state.done, [done for _, _, done in PRIVATE for _ in range(2)])
        for method, path, _ in PUBLIC:
            response, _ = self.ask(token, method, path)
            self.assertEqual(response.code, 200, path)


class ReadTokenTests(SynchronousTestCase):
    """
    L{access.read_token} takes a private regular file of reasonable size.
    """

    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="ics-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.path = os.path.join(self.folder, "token")

    def write(self, content, mode=0o600):
        with open(self.path, "wb") as f:
            f.write(content)
        os.chmod(self.path, mode)

    def refused(self, fragment):
        error = self.assertRaises(access.TokenError, access.read_token, self.path)
        self.assertIn(fragment, str(error))
        self.assertNotIn(TOKEN, str(error))
        return error

    def test_private_file(self):
        """
        A 0600 (or 0400) file of this user gives its token, surrounding
        whitespace left out.
        """
        for mode in (0o600, 0o400):
            self.write(b"  " + TOKEN.encode() + b"\n", mode)
            self.assertEqual(access.read_token(self.path), TOKEN.encode())

    def test_open_modes_refused(self):
        """
        Any access for group or others is refused, naming the mode.
        """
        for mode in (0o640, 0o604, 0o660, 0o666, 0o620):
            self.write(TOKEN.encode(), mode)
            self.refused("is mode {:04o}; it must be 0600".format(mode))

    def test_other_owner_refused(self):
        """
        A file another user owns (who could change it) is refused.
        """
        if os.geteuid() != 0:
            self.skipTest("only root gives files away")
        self.write(TOKEN.encode())
        os.chown(self.path, 65534, -1)
        self.refused("owned by uid 65534")

    def test_size_and_content(self):
        """
        More than 4 KiB, a token of several words or control characters, or
        one shorter than 16 characters is refused.
        """
        for content, fragment in [
                (b"x" * 4097, "more than 4096 bytes"),
                (b"a" * 5000 + b"\n", "more than 4096 bytes"),
                (TOKEN.encode() + b" second", "one word"),
                (TOKEN.encode() + b"\x00", "one word"),
                ("t\u00f6ken-with-umlaut-long".encode(), "one word"),
                (b"", "shorter than 16"),
                (b"short-token\n", "shorter than 16")]:
            self.write(content)
            self.refused(fragment)

    def test_not_regular(self):
        """
        A FIFO (opened without blocking), a device, a folder or a missing
        file is refused.
        """
        os.mkfifo(self.path, 0o600)
        self.refused("not a regular file")
        for path, fragment in [("/dev/zero", "not a regular file"),
                               (self.folder, "not a regular file"),
                               (os.path.join(self.folder, "none"), "cannot open")]:
            error = self.assertRaises(access.TokenError, access.read_token, path)
            self.assertIn(fragment, str(error))


class ConnectionLimitTests(SynchronousTestCase):
    """
    L{access.ConnectionLimit} closes connections past its limit.
    """

    def connect(self, factory):
        protocol = factory.buildProtocol(None)
        if protocol is not None:
            protocol.makeConnection(StringTransport())
        return protocol

    def test_limit(self):
        """
        Past the limit, a new connection gets no protocol (the listener
        closes it at once), with one warning per flood; once one ends,
        another is served.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        factory = access.ConnectionLimit(ServerFactory.forProtocol(Protocol), "127.0.0.1:9",
                                         limit=3)
        open_ = [self.connect(factory) for _ in range(3)]
        self.assertNotIn(None, open_)
        self.assertEqual([self.connect(factory) for _ in range(100)], [None] * 100)
        warnings = [e for e in logged if "connections open" in e["log_format"]]
        self.assertEqual(len(warnings), 1)
        open_[0].connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(self.connect(factory))
        self.assertIsNone(self.connect(factory))
        self.assertEqual(len([e for e in logged if "connections open" in e["log_format"]]), 2)
