"""
Hardening of the config sync (issue 12), each against what a writer of the
cluster ConfigMap or a careless operator could do before it:

  - L{ReloadIntervalFloorTests} (#5): C{reloadInterval} has a floor of 1 s
    for the file and L{MIN_POLL_INTERVAL} for the ConfigMap poll (it reaches
    the API server), each with a warning naming the key;
  - L{SymlinkedConfigTests} (#8): the sync writes a symlinked config file's
    target, keeping the link, the target's owner and group, and says so;
  - L{CredentialsFollowAddressTests} (#9): a ConfigMap that moves
    C{sealos.address} without sending C{sealos.auth} does not carry the
    node's login to the new address;
  - L{ReadableConfigTests}: a config file holding a password that other
    users may read (or anyone may write) is warned about at start and at
    reload.
"""

import os
import stat

import yaml
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from cri_shim import tap
from cri_shim.model import schema
from cri_shim.sync.configmap import MIN_POLL_INTERVAL
from tests.sync.test_configmap import CLUSTER, PollerTestMixin
from tests.sync.test_reloader import GOOD, _ReloaderCase

#: The ConfigMap key the tests set.
KEY = "registries.yaml"


def _warnings(events):
    return [e for e in events if e["log_level"] == LogLevel.warn]


class ReloadIntervalFloorTests(PollerTestMixin, SynchronousTestCase):
    def test_file_floor(self):
        """
        A C{reloadInterval} under 1 s (here 1 ms) is read as 1 s, with a
        warning naming the key; the config is still valid.
        """
        config, notices = schema.load(b"reloadInterval: 1ms\n")
        self.assertEqual(config.reload_interval, 1.0)
        self.assertEqual([(n.level, n.message) for n in notices], [
            ("warn", "reloadInterval: 1ms is shorter than the floor of 1s; using 1s")])

    def test_configmap_cannot_make_nodes_flood_the_api_server(self):
        """
        A ConfigMap setting C{reloadInterval: 1ms} is applied (the file is
        re-read every second), but the ConfigMap sync asks the API server no
        more for it: one list and one watch; and where the identity may not
        watch, the poll that replaces it asks at most once per
        L{MIN_POLL_INTERVAL}, with one warning naming the key.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {
            KEY: CLUSTER + "reloadInterval: 1ms\n"})
        self.start()
        self.assertEqual(self.holder.current.config.reload_interval, 1.0)
        for _ in range(int(3 * MIN_POLL_INTERVAL)):
            self.tick(1)
        self.assertEqual(self.api.requests, 2)
        self.poller.stopService()
        self.api.watch_forbidden = True
        self.api.requests = 0
        with capturedLogs() as events:
            self.start()
            for _ in range(int(3 * MIN_POLL_INTERVAL)):
                self.tick(1)
        # A list and the refused watch, then a list every MIN_POLL_INTERVAL.
        self.assertEqual(self.api.requests, 5)
        floors = [e for e in _warnings(events) if "reloadInterval" in e["log_format"]]
        self.assertEqual(len(floors), 1)
        self.assertEqual((floors[0]["interval"], floors[0]["floor"]), (1.0, MIN_POLL_INTERVAL))


class SymlinkedConfigTests(PollerTestMixin, SynchronousTestCase):
    def setUp(self):
        PollerTestMixin.setUp(self)
        # /etc/image-cri-shim.yaml -> /srv/shim/config.yaml, 0640 root:adm
        # style (another owner and group, where the tests can set them).
        self.real = os.path.join(self.folder, "srv")
        os.mkdir(self.real)
        self.target = os.path.join(self.real, "config.yaml")
        os.rename(self.path, self.target)
        os.chmod(self.target, 0o640)
        self.owner = (4321, 4322) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
        os.chown(self.target, *self.owner)
        os.symlink(self.target, self.path)

    def test_target_written_link_kept(self):
        """
        The merged config is written to the link's target, in the target's
        folder, 0600, with the target's owner and group; the link stays a
        link; the log says the link was followed.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {KEY: CLUSTER})
        with capturedLogs() as events:
            self.start()
        self.assertTrue(os.path.islink(self.path))
        self.assertEqual(os.readlink(self.path), self.target)
        status = os.stat(self.target)
        self.assertEqual((stat.S_IMODE(status.st_mode), status.st_uid, status.st_gid),
                         (0o600,) + self.owner)
        self.assertIn(b"cluster:pw", self.local())
        self.assertEqual(self.offline_password(), "cluster:pw")
        self.assertEqual(sorted(os.listdir(self.folder)), ["image-cri-shim.yaml", "srv"])
        self.assertEqual(os.listdir(self.real), ["config.yaml"])
        [followed] = [e for e in events if "symbolic link" in e["log_format"]]
        self.assertEqual((followed["path"], followed["target"]), (self.path, self.target))


class CredentialsFollowAddressTests(PollerTestMixin, SynchronousTestCase):
    def test_moved_address_drops_local_login(self):
        """
        A ConfigMap that sets another C{sealos.address} and no
        C{sealos.auth}: the node's login is not sent to the new address (not
        in the file, not in the running config); one warning names the key
        and holds no secret.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {
            KEY: "sealos: {address: https://registry.attacker.example}\n"})
        with capturedLogs() as events:
            self.start()
        offline = self.holder.current.config.offline
        self.assertEqual((offline.name, offline.credentials),
                         ("registry.attacker.example", None))
        self.assertNotIn("auth", yaml.safe_load(self.local()))
        self.assertNotIn(b"local-pw", self.local())
        [warning] = [e for e in _warnings(events) if "sealos.address" in e.get("notice", "")]
        self.assertIn("sealos.auth", warning["notice"])
        self.assertNotIn("local-pw", repr(events))

    def test_same_address_keeps_local_login(self):
        """
        The same address, spelled otherwise, keeps the node's login.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {
            KEY: "sealos: {address: 'HTTP://Sealos.Hub:5000/'}\nforce: true\n"})
        self.start()
        self.assertIn(b"force: true", self.local())
        self.assertEqual(self.offline_password(), "local-pw")


class ReadableConfigTests(_ReloaderCase):
    def test_warned_at_start(self):
        """
        At start, a config file holding a password that is group- or
        world-readable, or world-writable, is warned about with its mode;
        a 0600 one is not.
        """
        for mode, warned in ((0o644, True), (0o640, True), (0o602, True), (0o600, False)):
            os.chmod(self.path, mode)
            options = tap.Options()
            options.parseOptions(["--config", self.path])
            _, notices = options["loaded"]
            shown = "(mode {:04o})".format(mode)
            self.assertEqual([n.level for n in notices if shown in n.message],
                             ["warn"] if warned else [], oct(mode))

    def test_warned_at_reload(self):
        """
        A reloaded file that is world-readable is warned about, naming the
        file and its mode.
        """
        self.start()
        with capturedLogs() as events:
            self.write(GOOD.replace(b"admin:one", b"admin:two"))
            os.chmod(self.path, 0o604)
            self.reactor.advance(10)
        [warning] = _warnings(events)
        self.assertEqual(warning["path"], self.path)
        self.assertIn("world-readable (mode 0604)", warning["notice"])
