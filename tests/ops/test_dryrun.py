"""
Tests for L{cri_shim.ops.dryrun}: a recording runtime on a real gRPC socket and
fake registries served over real HTTP on 127.0.0.1.
"""

import io
import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from cri_shim.ops.dryrun import dry_run
from cri_shim.testing import FakeRegistries, FakeRegistry, FakeRuntime

CONFIG = """
cri: {runtime}
address: http://{offline}
auth: admin:{offline_password}
registries:
  - address: http://{mirror}
    auth: m:mirror-secret-pw
"""


class DryRunTests(TestCase):
    def setUp(self):
        folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, folder, True)
        self.runtime_path = os.path.join(folder, "runtime.sock")
        self.runtime = FakeRuntime(self.runtime_path)
        self.addCleanup(self.runtime.stop)
        self.offline = self.serve(FakeRegistry("admin", "offline-secret-pw"))
        self.mirror = self.serve(FakeRegistry("m", "mirror-secret-pw"))

    def serve(self, registry):
        """
        Serve C{registry} over HTTP on 127.0.0.1.

        :return: its C{host:port}.
        """
        routes = FakeRegistries()
        port = reactor.listenTCP(0, Site(routes), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        host = "127.0.0.1:{}".format(port.getHost().port)
        routes.add(host, registry)
        return host

    def config(self, offline_password, runtime=None):
        return CONFIG.format(runtime=runtime or self.runtime_path, offline=self.offline,
                             mirror=self.mirror, offline_password=offline_password)

    def run_dry(self, text, runtime_socket=None):
        out = io.StringIO()
        d = dry_run(reactor, "shim.yaml", text.encode("utf-8"), out,
                    runtime_socket or (lambda config: self.runtime_path))
        return d.addCallback(lambda status: (status, out.getvalue()))

    def test_all_good(self):
        """
        Valid config, runtime answering, logins accepted: exit 0, and the
        report shows every registry and no password.
        """
        d = self.run_dry(self.config("offline-secret-pw"))

        def check(result):
            status, text = result
            self.assertEqual(status, 0, text)
            self.assertIn("registry {0} (http://{0}, priority 1000): reachable, credentials "
                          "accepted".format(self.offline), text)
            self.assertIn("registry {0} (http://{0}, priority 500): reachable, credentials "
                          "accepted".format(self.mirror), text)
            self.assertIn("runtime:", text)
            self.assertIn("dry run: OK", text)
            self.assertNotIn("secret-pw", text)
        return d.addCallback(check)

    def test_rejected_login(self):
        """
        A login the registry refuses is reported and fails the dry run.
        """
        d = self.run_dry(self.config("wrong-password"))

        def check(result):
            status, text = result
            self.assertEqual(status, 1)
            self.assertIn("registry {0} (http://{0}, priority 1000): FAILED: credentials "
                          "rejected (401)".format(self.offline), text)
            self.assertNotIn("wrong-password", text)
        return d.addCallback(check)

    def test_no_runtime(self):
        """
        A runtime that is not there fails the dry run, saying why.
        """
        def missing(config):
            raise RuntimeError("no CRI socket at /nope.sock")

        d = self.run_dry(self.config("x", runtime="/nope.sock"), missing)

        def check(result):
            status, text = result
            self.assertEqual(status, 1)
            self.assertIn("runtime: FAILED: no CRI socket at /nope.sock", text)
        return d.addCallback(check)

    def test_invalid_config(self):
        """
        Every config problem is listed at once; nothing else is checked.
        """
        d = self.run_dry("timeout: 5\nforce: maybe\nauth: a:hidden-pw\n")

        def check(result):
            status, text = result
            self.assertEqual(status, 1)
            self.assertIn("INVALID", text)
            self.assertIn("timeout:", text)
            self.assertIn("force:", text)
            self.assertNotIn("runtime:", text)
        return d.addCallback(check)
