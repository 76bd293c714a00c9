"""
Security properties of the shim.

  - L{CredentialRoutingTests}: with real pulls through the shim, real
    containerd and two real registries, each registry only ever receives
    its own login (or none), never the other's, never kubelet's.
  - L{ShimSocketModeTests}, L{AdminExposureTests}, L{ConfigFileModeTests}:
    the CRI socket is 0660, the admin socket 0600 in a 0700 folder, the
    config file 0600 after every write, and the admin endpoint is not
    reachable from other hosts unless asked for (with a warning).
  - L{RewritePropertyTests}: properties of the rewrite (L{cri_shim.model.rewrite}
    over L{cri_shim.model.reference}) for any image and any registry address.

The secret check over the whole suite's logs and output is
L{tests.secrets_guard}; it runs last, in L{tests.test_zz_secrets}.
"""

import errno
import fcntl
import json
import os
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
import urllib.request

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.resource import Resource

from cri_shim.model import config, reference, rewrite, schema
from cri_shim.model.names import parse_requested
from cri_shim.ops.admin import admin_service
from tests.e2e_support import (
    ALICE, BOB, CALL_TIMEOUT, KUBELET_AUTH, SHIM_START_TIMEOUT, ShimNode, basic_token,
    skip_reason)
from tests.sync.test_configmap import CLUSTER, PollerTestMixin
from tests.model.test_reference import _DOMAINS, _NEAR_REFERENCES, _PATHS, _references


# -- a recording man-in-the-middle ------------------------------------------------


class RecordedRequest:
    """
    The head of one HTTP request a client sent through a L{RecordingProxy}.

    :ivar headers: C{[(name, value)]} as sent.
    """

    def __init__(self, method, path, headers):
        self.method = method
        self.path = path
        self.headers = headers

    def header(self, name):
        """
        :return: the values of header C{name} (any case), in order.
        """
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def authorization(self):
        values = self.header("authorization")
        return values[0] if values else None

    @property
    def from_containerd(self):
        return any("containerd" in agent for agent in self.header("user-agent"))

    def __repr__(self):
        return "<{} {} ua={} auth={}>".format(
            self.method, self.path, self.header("user-agent"),
            "yes" if self.authorization else "no")


class _RequestParser:
    """
    Splits a client's byte stream into HTTP/1.1 request heads, skipping
    bodies by C{Content-Length}.
    """

    def __init__(self, record):
        self._record = record
        self._buffer = b""
        self._body_left = 0
        self.unparsed = None

    def feed(self, data):
        self._buffer += data
        while self.unparsed is None:
            if self._body_left:
                skipped = min(self._body_left, len(self._buffer))
                self._buffer = self._buffer[skipped:]
                self._body_left -= skipped
                if self._body_left:
                    return
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
            lines = head.decode("latin-1").split("\r\n")
            request_line = lines[0].split(" ")
            if len(request_line) != 3:
                self.unparsed = lines[0]
                return
            headers = [tuple(part.strip() for part in line.split(":", 1))
                       for line in lines[1:] if ":" in line]
            self._record(RecordedRequest(request_line[0], request_line[1], headers))
            names = [name.lower() for name, _ in headers]
            if "transfer-encoding" in names:
                self.unparsed = "a chunked request body"
                return
            lengths = [value for name, value in headers if name.lower() == "content-length"]
            self._body_left = int(lengths[0]) if lengths else 0


class RecordingProxy:
    """
    A TCP man-in-the-middle in front of one registry, on 127.0.0.1: relays
    bytes both ways unchanged (so the registry's answers, auth challenges
    included, reach the client as they are) and records every byte the
    clients sent and the head of each HTTP request.

    :ivar host: C{127.0.0.1:PORT}, what the shim's config names.
    :ivar requests: the L{RecordedRequest}s, in order.
    :ivar sent: every byte clients sent, all connections together.
    """

    def __init__(self, target):
        name, _, port = target.rpartition(":")
        self._target = (name, int(port))
        self._lock = threading.Lock()
        self._sockets = []
        self._parsers = []
        self.requests = []
        self.sent = bytearray()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.host = "127.0.0.1:{}".format(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name="recording-proxy", daemon=True).start()

    @property
    def url(self):
        return "http://" + self.host

    @property
    def unparsed(self):
        """
        :return: what the parser could not follow, or C{[]}.
        """
        return [parser.unparsed for parser in self._parsers if parser.unparsed is not None]

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            parser = _RequestParser(self._record)
            with self._lock:
                self._sockets += [client, upstream]
                self._parsers.append(parser)
            threading.Thread(target=self._relay, args=(client, upstream, parser),
                             daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, None),
                             daemon=True).start()

    def _record(self, request):
        with self._lock:
            self.requests.append(request)

    def _relay(self, source, destination, parser):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if parser is not None:
                    with self._lock:
                        self.sent += data
                    parser.feed(data)
                destination.sendall(data)
        except OSError:
            pass
        finally:
            try:
                destination.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            s.close()


class _E2EMixin:
    """
    Skipped where the sandbox cannot run; L{make_node} gives a started
    sandbox, cleaned up after the test.
    """

    def setUp(self):
        reason = skip_reason()
        if reason is not None:
            raise SkipTest(reason)

    def make_node(self, registries=(ALICE, BOB)):
        node = ShimNode(registries)
        self.addCleanup(node.cleanup)
        node.start_sandbox()
        return node


def _base_lines(node, admin=None):
    return [
        "shim: {}".format(node.socket),
        "cri: {}".format(node.containerd.socket),
        "admin: {}".format(admin or node.admin),
        "stateDir: {}".format(node.state_dir),
    ]


class CredentialRoutingTests(_E2EMixin, SynchronousTestCase):
    """
    Real pulls through the shim, each registry behind a L{RecordingProxy}.
    """

    def test_credentials_only_to_their_registry(self):
        """
        Two registries A (offline) and B, each with its own login, each
        behind a recording proxy that the shim's config names.  Through the
        shim: an image only A holds (rewritten to A), then one only B holds
        (rewritten to B), both with kubelet's credentials in the
        PullImageRequest, then one that names B itself, without credentials
        (B's are added).  All three pulls succeed.

        Every request A received (containerd's and the shim's own manifest
        probes) carried A's Basic login or none; B's likewise; no byte
        either received holds kubelet's user, password or base64 login, or
        the other registry's password or login.

        That the shim set C{server_address} to the registry's URL is shown
        indirectly: containerd's CRI plugin applies a PullImageRequest's
        credentials only when the host of its C{server_address} is the host
        it pulls from (C{ParseAuth} in containerd's CRI plugin returns no
        credentials otherwise), and both registries refuse a pull without
        their login; so containerd's own requests carrying A's login to A
        and B's to B, and the pulls succeeding, mean that each
        PullImageRequest named that registry.  The request itself is
        checked field by field against a recording runtime in
        L{tests.serve.test_image_service} (C{test_rewrite_with_registry_credentials},
        C{test_moved_to_open_registry_drops_kubelet_auth},
        C{test_configured_registry_gets_its_login}).
        """
        node = self.make_node()
        only_a = node.offline.push_image("library/nginx", "latest", content=b"on A only")
        only_b = node.second.push_image("only/second", "v1", content=b"on B only")
        names_b = node.second.push_image("named/b", "v2", content=b"named B")
        proxy_a = RecordingProxy(node.offline.host)
        self.addCleanup(proxy_a.close)
        proxy_b = RecordingProxy(node.second.host)
        self.addCleanup(proxy_b.close)
        node.write_config("\n".join(_base_lines(node) + [
            "address: {}".format(proxy_a.url),
            "auth: {}:{}".format(*ALICE),
            "registries:",
            "  - address: {}".format(proxy_b.url),
            "    auth: {}:{}".format(*BOB),
            "",
        ]))
        node.start_shim()
        client = node.client("runtime.v1")
        api = client.api

        def pull(name, auth):
            request = api.PullImageRequest(image=client.image(name))
            if auth is not None:
                request.auth.username, request.auth.password = auth
            return client.PullImage(request, timeout=CALL_TIMEOUT).image_ref

        self.assertEqual(pull("nginx:latest", KUBELET_AUTH), only_a.config_digest)
        self.assertEqual(pull("only/second:v1", KUBELET_AUTH), only_b.config_digest)
        self.assertEqual(pull("{}/named/b:v2".format(proxy_b.host), None),
                         names_b.config_digest)
        images = node.containerd_images()
        for name in ("{}/library/nginx:latest".format(proxy_a.host),
                     "{}/only/second:v1".format(proxy_b.host),
                     "{}/named/b:v2".format(proxy_b.host)):
            self.assertIn(name, images)

        logins = {"A": ALICE, "B": BOB}
        for name, proxy, other in (("A", proxy_a, "B"), ("B", proxy_b, "A")):
            self.assertEqual(proxy.unparsed, [], name)
            own = "Basic " + basic_token(*logins[name])
            sent = [request.authorization for request in proxy.requests]
            self.assertTrue(set(sent) <= {None, own},
                            "{} received another login: {}".format(name, proxy.requests))
            pulls = [request for request in proxy.requests if request.from_containerd]
            self.assertTrue(pulls, "containerd never reached {}".format(name))
            self.assertTrue(
                [r for r in pulls if r.authorization == own and "/manifests/" in r.path],
                "containerd never sent {}'s login to it: {}".format(name, pulls))
            probes = [request for request in proxy.requests if not request.from_containerd]
            self.assertTrue(
                [r for r in probes if r.method == "HEAD" and r.authorization == own],
                "the shim never probed {} with its login: {}".format(name, probes))
            raw = bytes(proxy.sent)
            for secret, what in (
                    (KUBELET_AUTH[0], "kubelet's user"),
                    (KUBELET_AUTH[1], "kubelet's password"),
                    (basic_token(*KUBELET_AUTH), "kubelet's base64 login"),
                    (logins[other][1], other + "'s password"),
                    (basic_token(*logins[other]), other + "'s base64 login")):
                self.assertNotIn(secret.encode(), raw,
                                 "{} received {}".format(name, what))


# -- sockets and files --------------------------------------------------------------


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


class ShimSocketModeTests(_E2EMixin, SynchronousTestCase):
    """
    The shim's sockets as created by a real shim process, started with a
    umask of 0 (the widest an operator could leave), in folders it has to
    create.
    """

    def start_shim(self, node):
        previous = os.umask(0)
        try:
            node.spawn_shim()
        finally:
            os.umask(previous)
        # start_shim's wait, without spawning again: until the admin endpoint
        # answers too (node.serving), so both sockets have their final mode
        # and the shim stops cleanly on SIGTERM.
        deadline = time.monotonic() + SHIM_START_TIMEOUT
        while not node.serving():
            self.assertIsNone(node.process.poll(), node.shim_log())
            self.assertLess(time.monotonic(), deadline, node.shim_log())
            time.sleep(0.02)

    def assertModes(self, node, admin):
        self.assertTrue(stat.S_ISSOCK(os.lstat(node.socket).st_mode))
        self.assertEqual(_mode(node.socket), 0o660)
        self.assertEqual(_mode(os.path.dirname(node.socket)), 0o711)
        self.assertEqual(_mode(admin), 0o600)
        self.assertEqual(_mode(os.path.dirname(admin)), 0o700)

    def test_modes_after_start_and_restarts(self):
        """
        The CRI socket is 0660 (its new folder 0711) and the admin socket
        0600 (its new folder 0700) after a start, after a restart following
        a clean stop, and after a restart following a SIGKILL (the stale
        socket files are replaced).
        """
        node = self.make_node()
        node.socket = os.path.join(node.sandbox.directory, "run", "cri", "shim.sock")
        admin = os.path.join(node.sandbox.directory, "run", "admin", "admin.sock")
        node.write_config("\n".join(_base_lines(node, admin) + [
            "address: {}".format(node.offline.url), "auth: {}:{}".format(*ALICE), ""]))

        self.start_shim(node)
        self.assertModes(node, admin)

        node.stop_shim()
        self.assertFalse(os.path.lexists(node.socket), node.shim_log())
        self.start_shim(node)
        self.assertModes(node, admin)

        node.process.kill()
        node.process.wait()
        self.assertTrue(os.path.lexists(node.socket), "no stale socket left to replace")
        self.start_shim(node)
        self.assertModes(node, admin)
        client = node.client("runtime.v1")
        client.Version(client.api.VersionRequest(), timeout=CALL_TIMEOUT)

    def test_admin_tcp_loopback_only(self):
        """
        With C{admin: 127.0.0.1:PORT}, the admin endpoint answers on the
        loopback address only: a connection to the machine's non-loopback
        address on that port is refused.
        """
        address = _non_loopback_address()
        if address is None:
            raise SkipTest("this machine has no non-loopback IPv4 address")
        node = self.make_node()
        port = _free_port()
        node.write_config("\n".join(_base_lines(node, "127.0.0.1:{}".format(port)) + [
            "address: {}".format(node.offline.url), "auth: {}:{}".format(*ALICE), ""]))
        node.start_shim()
        url = "http://127.0.0.1:{}/healthz".format(port)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        _wait_until(lambda: _answers(opener, url), node.shim_log)
        with self.assertRaises(OSError) as caught:
            socket.create_connection((address, port), timeout=5).close()
        self.assertEqual(caught.exception.errno, errno.ECONNREFUSED, address)


def _answers(opener, url):
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_until(predicate, describe, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out:\n" + describe())
        time.sleep(0.05)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _non_loopback_address():
    """
    :return: an IPv4 address of this machine's interfaces other than
        loopback, or C{None}.
    """
    SIOCGIFADDR = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR,
                                     struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            address = socket.inet_ntoa(packed[20:24])
            if not address.startswith("127."):
                return address
    return None


class AdminExposureTests(TestCase):
    """
    The admin endpoint's defaults and the warning for exposing it.
    """

    def notices(self, admin):
        _, notices = schema.load("admin: {}\n".format(json.dumps(admin)))
        return [n.message for n in notices if n.level == "warn" and n.message.startswith(
            "admin:")]

    def test_default_is_a_private_socket(self):
        """
        With no C{admin} key, the endpoint is a UNIX socket (never TCP).
        """
        loaded, notices = schema.load("force: true\n")
        self.assertEqual(loaded.admin, config.DEFAULT_ADMIN_SOCKET)
        self.assertTrue(loaded.admin.startswith("/"))
        self.assertEqual(notices, [])

    def test_exposed_addresses_warn(self):
        """
        Any host other than loopback gives a warning naming the exposure.
        """
        for admin in ("0.0.0.0:9100", "[::]:9100", "192.0.2.2:9100", "node.example:9100"):
            warnings = self.notices(admin)
            self.assertEqual(len(warnings), 1, admin)
            self.assertIn("reachable from other hosts", warnings[0])
            self.assertIn("without authentication", warnings[0])

    def test_loopback_does_not_warn(self):
        """
        Loopback addresses and UNIX sockets give no warning.
        """
        for admin in ("127.0.0.1:9100", "[::1]:9100", "localhost:9100", "/run/x/admin.sock"):
            self.assertEqual(self.notices(admin), [], admin)

    def test_unix_socket_private_with_open_umask(self):
        """
        The admin socket is 0600 in a folder made 0700, even under a umask
        of 0.
        """
        folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "new", "admin.sock")
        service = admin_service(path, Resource(), reactor)
        previous = os.umask(0)
        try:
            service.startService()
        finally:
            os.umask(previous)
        self.addCleanup(service.stopService)
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        self.assertEqual(_mode(path), 0o600)
        self.assertEqual(_mode(os.path.dirname(path)), 0o700)

    def test_tcp_loopback_refuses_other_addresses(self):
        """
        A C{127.0.0.1:PORT} endpoint accepts connections on loopback and
        refuses them on the machine's other address.
        """
        address = _non_loopback_address()
        if address is None:
            raise SkipTest("this machine has no non-loopback IPv4 address")
        port = _free_port()
        service = admin_service("127.0.0.1:{}".format(port), Resource(), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with self.assertRaises(OSError) as caught:
            socket.create_connection((address, port), timeout=5).close()
        self.assertEqual(caught.exception.errno, errno.ECONNREFUSED)


class ConfigFileModeTests(PollerTestMixin, SynchronousTestCase):
    """
    The config file the ConfigMap sync writes.
    """

    def test_every_write_is_0600(self):
        """
        A config file an operator left world-readable is 0600 after the
        sync's first write and after each later one, under a umask of 0,
        with no temporary file left beside it.
        """
        os.chmod(self.path, 0o644)
        previous = os.umask(0)
        self.addCleanup(os.umask, previous)
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        self.start()
        first = self.local()
        self.assertIn(b"cluster:pw", first)
        self.assertEqual(_mode(self.path), 0o600)
        for priority in (701, 702):
            self.api.set_configmap("kube-system", "image-cri-shim", {
                "registries.yaml": CLUSTER.replace("priority: 700", "priority: {}".format(
                    priority))})
            self.tick(3600)
            self.assertIn("priority: {}".format(priority).encode(), self.local())
            self.assertEqual(_mode(self.path), 0o600)
        self.assertEqual(sorted(os.listdir(self.folder)), ["image-cri-shim.yaml"])


# -- the rewrite, for any image and any registry -------------------------------------


@st.composite
def _registry_addresses(draw):
    """
    Registry addresses as configs write them: an optional scheme, a host
    (with optional port), an optional path prefix (with optional trailing
    slash).

    :return: a parsed L{reference.RegistryAddress}.
    """
    text = draw(st.sampled_from(["", "http://", "https://", "HTTPS://"])) + draw(_DOMAINS)
    prefix = draw(st.none() | _PATHS)
    if prefix:
        text += "/" + prefix + draw(st.sampled_from(["", "/"]))
    try:
        return reference.parse_registry_address(text)
    except reference.InvalidRegistryAddress:
        assume(False)


def _swap_case(draw, text):
    return "".join(c.upper() if draw(st.booleans()) else c for c in text)


@st.composite
def _images_and_registries(draw):
    """
    :return: C{(image, address)}: an image reference as kubelet may send
        it, and a registry address; the image sometimes names the
        registry's host (in any case).
    """
    address = draw(_registry_addresses())
    text = draw(_references())[0]
    if draw(st.integers(0, 3)) == 0:
        host = _swap_case(draw, address.host) if address.host != "docker.io" else "docker.io"
        text = host + "/" + text.split("/", 1)[-1] if "/" in text else host + "/" + text
    ref = parse_requested(text)
    assume(ref is not None)
    return ref, address


def _one_registry(address):
    return config.Config(registries=(
        config.Registry(address=address, credentials=None, priority=500),))


class RewritePropertyTests(SynchronousTestCase):
    """
    The rewrite for any valid image (as the image service parses it: the
    default tag made explicit) and any registry address.
    """

    @settings(deadline=None, max_examples=300)
    @given(_images_and_registries())
    @example((reference.parse("quay.io/" + "a" * 250 + ":1"),
              reference.parse_registry_address("https://harbor.local/mirrors/hub")))
    def test_candidate(self, generated):
        """
        An image naming the registry's host stays as it is, with that
        registry.  Any other image gets one candidate on the registry,
        unless its path under the registry's prefix would be too long for a
        repository name (no candidate then, and no error).  The candidate's
        target parses back to itself, is on the registry's host under its
        prefix, keeps the tag and the digest, and is final: rewriting it
        again with the same registry changes nothing, and a pull of it
        never carries kubelet's credentials.
        """
        ref, address = generated
        cfg = _one_registry(address)
        registry = cfg.registries[0]
        decision = rewrite.decide_without_lookup(cfg, ref)
        if ref.domain.lower() == address.host:
            self.assertEqual((decision.source, decision.registry, decision.moved),
                             (rewrite.CONFIGURED, registry, False))
            self.assertEqual(list(rewrite.local_names(cfg, ref)), [str(ref)])
            return
        path = address.prefix + "/" + ref.path if address.prefix else ref.path
        found = rewrite.candidates(cfg, ref)
        if len(path) > reference.MAX_PATH_LENGTH:
            self.assertEqual(found, ())
            self.assertEqual(decision.source, rewrite.NO_REGISTRIES)
            return
        self.assertIsNone(decision)
        self.assertEqual([c.registry for c in found], [registry])
        target = found[0].target
        self.assertEqual(reference.parse(str(target)), target)
        self.assertEqual(target.domain, address.host)
        self.assertIn(target.path, (path, "library/" + path))
        self.assertEqual((target.tag, target.digest), (ref.tag, ref.digest))
        self.assertEqual(target.moved(address.host, address.prefix), target)
        again = rewrite.decide_without_lookup(cfg, target)
        self.assertEqual((again.source, again.registry, again.moved),
                         (rewrite.CONFIGURED, registry, False))
        self.assertEqual(list(rewrite.local_names(cfg, ref)), [str(ref), str(target)])
        for kubelet_sent_auth in (True, False):
            moved = rewrite.Decision(ref, target, registry, rewrite.PROBE)
            self.assertIs(rewrite.pull_credentials(moved, kubelet_sent_auth), rewrite.REPLACE)

    @settings(deadline=None, max_examples=300)
    @given(st.one_of(st.text(), _NEAR_REFERENCES, _references().map(lambda g: g[0])),
           st.lists(_registry_addresses(), min_size=1, max_size=4))
    def test_any_name_is_handled(self, text, addresses):
        """
        Any string the image service is sent is either relayed as is (not
        an image name it can parse) or a reference with a tag or digest
        whose lookups never raise, with any registries configured.
        """
        ref = parse_requested(text)
        if ref is None:
            return
        self.assertIsInstance(ref, reference.Reference)
        self.assertTrue(ref.tag or ref.digest)
        self.assertEqual(reference.parse(rewrite.cache_key(ref)), ref)
        registries = []
        for index, address in enumerate(addresses):
            if any(r.address.host == address.host and r.address.prefix == address.prefix
                   for r in registries):
                continue
            registries.append(config.Registry(address=address, credentials=None,
                                              priority=500 + index))
        cfg = config.Config(registries=tuple(registries))
        rewrite.decide_without_lookup(cfg, ref)
        for candidate in rewrite.candidates(cfg, ref):
            self.assertEqual(reference.parse(str(candidate.target)), candidate.target)
        list(rewrite.local_names(cfg, ref))

    @settings(deadline=None, max_examples=300)
    @given(st.one_of(st.text(), _DOMAINS, _registry_addresses().map(lambda a: a.url),
                     st.text(alphabet="aZ09.:/@[]%-_ ", max_size=40)))
    def test_any_address_in_config(self, text):
        """
        Any string as a registry address in a config gives a config or a
        L{config.ConfigError} naming the key, never another error; an
        accepted address round-trips through its URL and prefix.
        """
        document = "address: {}\nregistries:\n  - address: {}\n".format(
            json.dumps(text), json.dumps(text + ".x"))
        try:
            loaded, _ = schema.load(document)
        except config.ConfigError as e:
            self.assertTrue(all(p.startswith(("address", "registries[0]", "config"))
                                for p in e.problems), e.problems)
            return
        for registry in loaded.registries:
            address = registry.address
            again = reference.parse_registry_address(
                address.url + ("/" + address.prefix if address.prefix else ""))
            self.assertEqual(again, address)
