"""
Tests for L{cri_shim.tap}: options, finding the runtime's socket, and the
service tree; and the twistd plugin that points at it.
"""

import os
import shutil
import socket
import tempfile

from twisted.application.service import IServiceMaker
from twisted.internet.task import Clock
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from cri_shim import tap
from cri_shim.model import config


class _Reactor(Clock):
    def getThreadPool(self):
        raise AssertionError("not used when the service is not started")

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class OptionsTests(SynchronousTestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.folder, True)

    def write(self, text):
        path = os.path.join(self.folder, "shim.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_config(self):
        """
        --config loads and validates the file.
        """
        path = self.write("address: http://sealos.hub:5000\nforce: true\n")
        options = tap.Options()
        options.parseOptions(["--config", path])
        loaded, notices = options["loaded"]
        self.assertEqual(loaded.offline.name, "sealos.hub:5000")
        self.assertEqual(options["config"], path)

    def test_sealos_flag(self):
        """
        -f works as in the sealos shim.
        """
        path = self.write("force: true\n")
        options = tap.Options()
        options.parseOptions(["-f", path])
        self.assertEqual(options["config"], path)

    def test_missing_file(self):
        """
        An unreadable file is a usage error naming it.
        """
        path = os.path.join(self.folder, "nope.yaml")
        error = self.assertRaises(UsageError, tap.Options().parseOptions, ["--config", path])
        self.assertIn(path, str(error))

    def test_all_problems(self):
        """
        Every problem in the file is listed at once.
        """
        path = self.write("timeout: 15\nforce: maybe\nregistries: 3\n")
        error = self.assertRaises(UsageError, tap.Options().parseOptions, ["--config", path])
        for key in ("timeout:", "force:", "registries:"):
            self.assertIn(key, str(error))


class RuntimeSocketTests(SynchronousTestCase):
    def test_configured(self):
        """
        A configured socket that exists is used.
        """
        cfg = config.Config(cri="/run/x.sock")
        self.assertEqual(tap.runtime_socket(cfg, exists={"/run/x.sock"}.__contains__),
                         "/run/x.sock")

    def test_detected(self):
        """
        With C{cri} empty, the one known socket present is used.
        """
        present = {"/var/run/crio/crio.sock"}
        self.assertEqual(tap.runtime_socket(config.Config(), present.__contains__),
                         "/var/run/crio/crio.sock")

    def test_several(self):
        """
        Several runtimes present: the operator must choose.
        """
        present = set(config.CRI_SOCKETS)
        error = self.assertRaises(tap.StartupError, tap.runtime_socket, config.Config(),
                                  present.__contains__)
        self.assertIn("several CRI sockets", str(error))

    def test_missing_not_forced(self):
        """
        No runtime and no C{force}: a clear refusal naming the socket.
        """
        cfg = config.Config(cri="/run/x.sock")
        error = self.assertRaises(tap.StartupError, tap.runtime_socket, cfg, lambda path: False)
        self.assertIn("/run/x.sock", str(error))
        self.assertIn("force", str(error))

    def test_missing_forced(self):
        """
        With C{force}, the socket is used even before it exists; with none
        configured, containerd's.
        """
        self.assertEqual(tap.runtime_socket(config.Config(cri="/run/x.sock", force=True),
                                            lambda path: False), "/run/x.sock")
        self.assertEqual(tap.runtime_socket(config.Config(force=True), lambda path: False),
                         "/run/containerd/containerd.sock")


class MakeServiceTests(SynchronousTestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.shim = os.path.join(self.folder, "shim.sock")
        path = os.path.join(self.folder, "shim.yaml")
        with open(path, "w") as f:
            f.write("shim: {}\ncri: {}/cri.sock\nforce: true\naddress: http://sealos.hub:5000\n"
                    "admin: {}/admin.sock\nstateDir: {}/state\n".format(
                        self.shim, self.folder, self.folder, self.folder))
        self.options = tap.Options()
        self.options.parseOptions(["--config", path])

    def test_tree(self):
        """
        The root service is named and holds the gRPC server.
        """
        root = tap.makeService(self.options, _Reactor())
        self.assertEqual(root.name, "image-cri-shim")
        self.assertEqual([child.name for child in root], [
            "config-reload", "configmap", "registry-health", "pod-events", "cache-stats", "names",
            "admin",
            "grpc"])
        self.assertEqual(root.getServiceNamed("grpc").path, self.shim)
        store = root.getServiceNamed("names")._store
        self.assertEqual(store.path, os.path.join(self.folder, "state", "names.json"))

    def test_sighup_resyncs_configmap(self):
        """
        SIGHUP (the reloader's hang_up) also makes the ConfigMap sync list
        again at once.
        """
        root = tap.makeService(self.options, _Reactor())
        reloader = root.getServiceNamed("config-reload")
        self.assertEqual(reloader._on_sighup, [root.getServiceNamed("configmap").resync])

    def test_socket_in_use(self):
        """
        A socket another server answers on stops the start with a clear
        message.
        """
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(self.shim)
        listener.listen(1)
        self.addCleanup(listener.close)
        error = self.assertRaises(SystemExit, tap.makeService, self.options, _Reactor())
        self.assertIn("image-cri-shim: another server is already listening", str(error))


class PluginTests(SynchronousTestCase):
    def test_found(self):
        """
        twistd finds the plugin by its tap name, and it provides
        IServiceMaker.
        """
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        maker = makers["image-cri-shim"]
        self.assertTrue(verifyObject(IServiceMaker, maker))
        self.assertIs(maker.options, tap.Options)
