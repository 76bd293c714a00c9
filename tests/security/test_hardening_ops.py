"""
Issue 12's findings on the admin endpoint, registry matching, address
errors and metric labels, each shown on the shim as it runs:

  - L{AdminOverTCPTests}: on a TCP admin address, a flood of 1,100 idle
    connections never stops a CRI call (the shim's descriptors stay
    bounded, under the 1,024 of a default process limit), and the actions,
    C{/explain} and C{/registries} are refused without the bearer token of
    C{adminTokenFile} (item 2).
    L{UnitFileTests}: the unit sets a high C{LimitNOFILE}.
  - L{PathLoginTests}: two registries on one host with different paths each
    get their own login, in a pull and in C{explain} (item 3).
  - L{AddressRedactionTests}: a password in an address never reaches a
    config error or the log, whatever its characters (item 6).
  - L{MadeUpMethodTests}: made-up gRPC method paths share one metric label
    (item 7).
  - L{UpperCaseHostTests}: a registry configured with an upper-case host
    still gets its login through containerd (a check the issue asked for).
"""

import json
import os
import resource
import socket
import urllib.error
import urllib.request

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from cri_shim.metrics import Metrics
from cri_shim.model import config, schema
from cri_shim.model.reference import parse
from cri_shim.ops.admin import AdminResource, AdminState
from cri_shim.registries.health import RegistryHealthChecker
from cri_shim.registries.resolver import Resolver
from cri_shim.serve.passthrough import ProxyHandler
from cri_shim.snapshot import SnapshotHolder
from cri_shim.sync.reloader import ConfigReloader
from cri_shim.testing import FakeReactor, registry_config
from tests import secrets_guard
from tests.e2e_support import ALICE, CALL_TIMEOUT, REPO_ROOT, ShimNode, skip_reason
from tests.security.test_security import _free_port, _wait_until
from tests.serve.test_image_service import ShimTestMixin

#: The admin bearer token of the tests that configure one.
TOKEN = "admin-bearer-token-3c9e1f0b7d"
secrets_guard.register_secret(TOKEN, origin="test_hardening_ops.TOKEN")

#: Idle connections a local user opened in the issue's attack.
FLOOD = 1100
#: The shim's descriptor limit in the flood test: a default soft limit.
SHIM_NOFILE = 1024


class _LimitedShimNode(ShimNode):
    """
    A L{ShimNode} whose shim runs with at most L{SHIM_NOFILE} descriptors,
    as a unit without C{LimitNOFILE} leaves it.
    """

    def shim_command(self):
        return (["prlimit", "--nofile={}:{}".format(SHIM_NOFILE, SHIM_NOFILE), "--"]
                + ShimNode.shim_command(self))


class AdminOverTCPTests(SynchronousTestCase):
    """
    A real shim, in front of real containerd and registries, with C{admin:
    127.0.0.1:PORT}.
    """

    def setUp(self):
        reason = skip_reason()
        if reason is not None:
            raise SkipTest(reason)
        self.node = _LimitedShimNode()
        self.addCleanup(self.node.cleanup)
        self.node.start_sandbox()
        self.image = self.node.offline.push_image("library/nginx", "latest")
        self.port = _free_port()
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self, extra=""):
        text = self.node.config_text(extra=extra).replace(
            "admin: {}".format(self.node.admin), "admin: 127.0.0.1:{}".format(self.port))
        self.node.write_config(text)
        self.node.start_shim()
        _wait_until(lambda: self.ask("GET", "/healthz")[0] == 200, self.node.shim_log,
                    timeout=30)

    def ask(self, method, path, token=None):
        """
        :return: C{(status, body)}, or C{(None, reason)} when it cannot connect.
        """
        request = urllib.request.Request("http://127.0.0.1:{}{}".format(self.port, path),
                                         method=method, data=b"" if method == "POST" else None)
        if token is not None:
            request.add_header("Authorization", "Bearer " + token)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return None, str(e)

    def shim_descriptors(self):
        return len(os.listdir("/proc/{}/fd".format(self.node.process.pid)))

    def pull(self):
        client = self.node.client()
        response = client.PullImage(client.api.PullImageRequest(
            image=client.api.ImageSpec(image="nginx:latest")), timeout=CALL_TIMEOUT)
        return response.image_ref

    def test_idle_flood_never_stops_cri(self):
        """
        1,100 idle connections to the admin port: a new CRI client's pull
        (which needs new descriptors for the registry lookup) succeeds while
        they are open; the shim closes all but a bounded few at once, and
        its descriptors stay well under its limit of 1,024.
        """
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < FLOOD + 200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, FLOOD + 1000), hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        self.start()
        before = self.shim_descriptors()
        flood = []
        self.addCleanup(lambda: [s.close() for s in flood])
        for _ in range(FLOOD):
            s = socket.socket()
            s.settimeout(10)
            s.connect(("127.0.0.1", self.port))
            s.setblocking(False)
            flood.append(s)

        self.assertEqual(self.pull(), self.image.config_digest)

        def closed_by_shim():
            count = 0
            for s in flood:
                try:
                    count += s.recv(1, socket.MSG_PEEK) == b""
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    count += 1
            return count

        _wait_until(lambda: closed_by_shim() >= FLOOD - 64, lambda: "{} of {} closed; {} "
                    "descriptors\n{}".format(closed_by_shim(), FLOOD, self.shim_descriptors(),
                                             self.node.shim_log()), timeout=30)
        self.assertLessEqual(self.shim_descriptors(), before + 64 + 32)
        log = self.node.shim_log()
        self.assertNotIn("EMFILE", log)
        self.assertEqual(log.count("connections open; closing new ones"), 1, log)

    def test_actions_need_the_token(self):
        """
        Without C{adminTokenFile}, the read-only pages answer over TCP and
        everything else is refused (403), so no reload, flush or lookup
        happens; a warning at start says the endpoint is on TCP.
        """
        self.start()
        for path in ("/metrics", "/healthz", "/readyz"):
            self.assertEqual(self.ask("GET", path)[0], 200, path)
        for method, path in (("POST", "/reload"), ("POST", "/cache/flush"),
                             ("GET", "/explain?image=attacker/name1:x"),
                             ("GET", "/registries")):
            status, body = self.ask(method, path, token=TOKEN)
            self.assertEqual(status, 403, (path, body))
        log = self.node.shim_log()
        self.assertIn("the admin endpoint is on TCP (127.0.0.1:{})".format(self.port), log)
        self.assertNotIn("rewrite cache flushed by an admin request", log)
        self.assertNotIn("(admin request)", log)
        self.assertNotIn("attacker", log)

    def test_token_file_opens_the_actions(self):
        """
        With C{adminTokenFile} (mode 0600), the actions answer over TCP with
        the bearer token, and are refused (401) without it; the token never
        shows in the log.
        """
        path = os.path.join(self.node.sandbox.directory, "admin-token")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(TOKEN + "\n")
        self.start("adminTokenFile: {}\n".format(path))
        self.assertEqual(self.ask("POST", "/reload")[0], 401)
        self.assertEqual(self.ask("POST", "/reload", token="wrong-" + TOKEN)[0], 401)
        self.assertEqual(self.ask("POST", "/reload", token=TOKEN),
                         (200, '{\n  "reloaded": false\n}\n'))
        status, body = self.ask("GET", "/registries", token=TOKEN)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)[0]["login"], "login 'alice' (password redacted)")
        self.assertNotIn(TOKEN, self.node.shim_log())

    def test_open_token_file_refused(self):
        """
        A token file others may read is refused at start, with an error
        naming the key and the mode; the actions stay off TCP even with
        that token.
        """
        path = os.path.join(self.node.sandbox.directory, "admin-token")
        with open(path, "w") as f:
            f.write(TOKEN)
        os.chmod(path, 0o644)
        self.start("adminTokenFile: {}\n".format(path))
        self.assertEqual(self.ask("POST", "/reload", token=TOKEN)[0], 403)
        log = self.node.shim_log()
        self.assertIn("adminTokenFile: {} is mode 0644; it must be 0600".format(path), log)
        self.assertNotIn(TOKEN, log)


class UnitFileTests(SynchronousTestCase):
    """
    The systemd unit the package installs.
    """

    def test_descriptor_limit(self):
        """
        The unit raises the descriptor limit far above the default 1,024,
        so that many CRI streams fit besides the bounded admin endpoint.
        """
        with open(os.path.join(REPO_ROOT, "conf", "image-cri-shim.service")) as f:
            lines = [line.strip() for line in f if line.startswith("LimitNOFILE=")]
        self.assertEqual(lines, ["LimitNOFILE=1048576"])


# -- item 3: one host, two paths, two logins ------------------------------------------

HOST = registry_config("http://harbor.example", "admin", "admin-pw")
UNDER_B = registry_config("http://harbor.example/b", "bob", "bob-pw")


def _two_on_one_host():
    # Equal priorities: the host's own entry sorts first, by name.
    return config.Config(registries=(HOST, UNDER_B))


class PathLoginTests(ShimTestMixin, SynchronousTestCase):
    """
    C{http://harbor.example} (login admin) and C{http://harbor.example/b}
    (login bob).
    """

    def make_config(self):
        return _two_on_one_host()

    def test_registry_for_longest_prefix(self):
        """
        A name under C{b/} is C{harbor.example/b}'s; any other name on the
        host (C{c/x}, and C{bb/x}, which is not under C{b/}) is
        C{harbor.example}'s.
        """
        loaded = _two_on_one_host()
        for name, expected in [("harbor.example/b/app:1", UNDER_B),
                               ("harbor.example/b/team/app:1", UNDER_B),
                               ("HARBOR.example/b/app:1", UNDER_B),
                               ("harbor.example/c/x:1", HOST),
                               ("harbor.example/bb/x:1", HOST)]:
            self.assertIs(loaded.registry_for(parse(name)), expected, name)

    def test_pull_gets_its_path_login(self):
        """
        PullImage C{harbor.example/b/app:1} goes out with bob's login,
        C{harbor.example/c/x:1} with admin's.
        """
        self.pull("harbor.example/b/app:1")
        self.pull("harbor.example/c/x:1")
        sent = [self.api.PullImageRequest.FromString(raw)
                for _, raw, _, _ in self.runtime_calls("PullImage")]
        self.assertEqual([(r.image.image, r.auth.username, r.auth.password,
                           r.auth.server_address) for r in sent], [
            ("harbor.example/b/app:1", "bob", "bob-pw", "http://harbor.example"),
            ("harbor.example/c/x:1", "admin", "admin-pw", "http://harbor.example"),
        ])

    def test_explain_says_the_path_login(self):
        """
        C{explain} names bob's login for C{harbor.example/b/app:1} and
        admin's for C{harbor.example/c/x:1}.
        """
        clock = Clock()
        holder = SnapshotHolder(_two_on_one_host(), clock.seconds)
        state = AdminState(Metrics(), holder, RegistryHealthChecker(holder, None, clock),
                           Resolver(None), None, None, None, clock)
        stub = StubTreq(AdminResource(state))
        for image, credentials in [
                ("harbor.example/b/app:1", "login 'bob' (password redacted) of "
                                           "harbor.example/b"),
                ("harbor.example/c/x:1", "login 'admin' (password redacted) of "
                                         "harbor.example")]:
            response = self.successResultOf(stub.get("http://admin/explain",
                                                     params={"image": image}))
            self.assertEqual(response.code, 200)
            decision = json.loads(self.successResultOf(response.content()))["decision"]
            self.assertEqual(decision["credentials"],
                             "kubelet's if it sends any, else " + credentials, image)


# -- item 6: passwords in addresses ---------------------------------------------------

#: Passwords an operator might paste into an address, each with characters
#: that end a URL's authority or start its query, fragment or port.
NASTY = ["Zx9?q#7Secret", "sl/ash/Secret42", "h#sh-Secret42", "q?uery=Secret42",
         "at@sign@Secret42", "colon:Secret42:x", "pct%2FSecret42", "sch://Secret42",
         "sp ace Secret42", "back\\slash Secret42"]


class AddressRedactionTests(SynchronousTestCase):
    """
    A password written into a registry address.
    """

    def documents(self):
        for password in NASTY:
            secrets_guard.register_secret(password, origin="test_hardening_ops.NASTY")
            for form in ("https://robot:{}@harbor.example.com/proxy",
                         "robot:{}@harbor.example.com", "htps://robot:{}@harbor.example.com",
                         "https://robot:{}@bad_host/Proxy"):
                address = form.format(password)
                for document in ("address: {}\n", "registries:\n  - address: {}\n"):
                    yield password, document.format(json.dumps(address))

    def test_not_in_config_errors(self):
        """
        The load fails naming the key and the user information, and the
        password shows nowhere in the error.
        """
        for password, document in self.documents():
            error = self.assertRaises(config.ConfigError, schema.load, document)
            self.assertNotIn(password, str(error))
            self.assertNotIn("Secret", str(error))
            self.assertEqual(len(error.problems), 1, error.problems)
            self.assertIn("user information is not allowed", str(error))

    def test_not_in_reload_log(self):
        """
        A live reload of such a file logs the refusal without the password.
        """
        path = self.mktemp()
        reactor = FakeReactor()
        holder = SnapshotHolder(config.Config(), reactor.seconds)
        reloader = ConfigReloader(path, holder, reactor, b"", handle_sighup=False)
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for password, document in self.documents():
            with open(path, "w") as f:
                f.write(document)
            self.assertFalse(self.successResultOf(reloader.reload("test")))
            text = "\n".join(formatEvent(event) for event in logged)
            self.assertNotIn(password, text)
            self.assertNotIn("Secret", text)
            self.assertIn("user information is not allowed", text)


# -- item 7: made-up method paths ---------------------------------------------------


class _Context:
    def time_remaining(self):
        return None

    def invocation_metadata(self):
        return ()

    def add_callback(self, callback):
        pass


class _Responses(list):
    def cancel(self):
        pass


class _Upstream:
    def unary(self, path):
        return None

    def stream(self, path):
        return lambda requests, timeout, metadata: _Responses()


class MadeUpMethodTests(SynchronousTestCase):
    """
    Calls relayed as streams, counted in the metrics.
    """

    def call(self, handler, path):
        rpc = handler.service(_Details(path))
        list(rpc.stream_stream(iter(()), _Context()))

    def test_one_label_for_made_up_methods(self):
        """
        3,000 made-up paths under C{/runtime.X/Y} (and other shapes) add
        one C{other} sample to C{/metrics}, not one each; a server-streaming
        CRI method keeps its own labels.
        """
        metrics = Metrics()
        handler = ProxyHandler(_Upstream(), {}, lambda: 60.0, metrics)
        lines = len(metrics.render().splitlines())
        for index in range(3000):
            self.call(handler, "/runtime.X{}/Y{}".format(index, index))
        for path in ("/runtime.v1.RuntimeService/Invented", "/runtime.v1.Invented/Version",
                     "/a/b/c", "nothing"):
            self.call(handler, path)
        self.call(handler, "/runtime.v1.RuntimeService/GetContainerEvents")
        text = metrics.render().decode()
        self.assertEqual(len(text.splitlines()), lines + 2)
        self.assertIn('image_cri_shim_calls_total{service="other",method="other",code="OK"} '
                      '3004', text)
        self.assertIn('image_cri_shim_calls_total{service="runtime.v1.RuntimeService",'
                      'method="GetContainerEvents",code="OK"} 1', text)


class _Details:
    def __init__(self, method):
        self.method = method
        self.invocation_metadata = ()


# -- an upper-case registry host ------------------------------------------------------


class UpperCaseHostTests(SynchronousTestCase):
    """
    The offline registry (htpasswd login) configured as
    C{http://Localhost:PORT}: C{localhost} resolves to 127.0.0.1, where it
    listens.
    """

    def setUp(self):
        reason = skip_reason()
        if reason is not None:
            raise SkipTest(reason)
        if socket.gethostbyname("localhost") != "127.0.0.1":
            raise SkipTest("localhost is not 127.0.0.1 here")
        self.node = ShimNode(registries=(ALICE,))
        self.addCleanup(self.node.cleanup)
        self.node.start_sandbox()

    def test_pull_stays_authenticated(self):
        """
        A pull moved there succeeds: the shim names the host in lower case
        in both the image name and C{server_address}, so containerd (which
        applies a request's login only when C{server_address}'s host equals,
        case-sensitively, the host it pulls from) sends the login that the
        registry demands; ImageStatus then finds the image.
        """
        pushed = self.node.offline.push_image("library/nginx", "latest", content=b"upper")
        port = self.node.offline.port
        self.node.write_config(self.node.config_text().replace(
            self.node.offline.url, "http://Localhost:{}".format(port)))
        self.node.start_shim()
        client = self.node.client()
        api = client.api
        image = api.ImageSpec(image="nginx:latest")
        response = client.PullImage(api.PullImageRequest(image=image), timeout=CALL_TIMEOUT)
        self.assertEqual(response.image_ref, pushed.config_digest)
        self.assertIn("localhost:{}/library/nginx:latest".format(port),
                      self.node.containerd_images())
        status = client.ImageStatus(api.ImageStatusRequest(image=image), timeout=CALL_TIMEOUT)
        self.assertEqual(status.image.id, pushed.config_digest)
