"""
Tests for L{cri_shim.sync.reloader}: the config file re-read on a fake clock and
on SIGHUP, bad content kept out, restart-only settings held back.
"""

import os
import shutil
import signal
import stat
import tempfile

from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, schema
from cri_shim.files import write_atomically
from cri_shim.sync.configfile import read_config
from cri_shim.sync.reloader import ConfigReloader
from cri_shim.snapshot import SnapshotHolder
from cri_shim.testing import no_jitter
from cri_shim.testing.reactor import FakeReactor

GOOD = b"address: http://sealos.hub:5000\nauth: admin:one\nreloadInterval: 10s\nforce: true\n"


class _ReloaderCase(SynchronousTestCase):
    def setUp(self):
        folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, folder, True)
        self.path = os.path.join(folder, "shim.yaml")
        self.write(GOOD)
        self.reactor = FakeReactor()
        self.holder = SnapshotHolder(schema.load(GOOD)[0], self.reactor.seconds)
        self.published = []
        self.holder.subscribe(self.published.append)

    def start(self, handle_sighup=False):
        self.reloader = ConfigReloader(self.path, self.holder, self.reactor, GOOD,
                                       handle_sighup=handle_sighup, uniform=no_jitter)
        self.reloader.startService()
        self.addCleanup(self.reloader.stopService)
        return self.reloader

    def write(self, text):
        # 0600: it holds a password (a readable one is warned about).
        with open(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(text)

    def password(self):
        return self.holder.current.config.offline.credentials.password.reveal()


class ConfigReloaderTests(_ReloaderCase):
    def test_change_published(self):
        """
        A changed file is published at the next tick; an unchanged one is
        not published again.
        """
        self.start()
        self.reactor.advance(10)
        self.assertEqual(self.published, [])
        self.write(GOOD.replace(b"admin:one", b"admin:two"))
        self.reactor.advance(10)
        self.assertEqual(len(self.published), 1)
        self.assertEqual(self.password(), "two")
        self.reactor.advance(10)
        self.assertEqual(len(self.published), 1)

    def test_bad_content_kept_out_and_told_once(self):
        """
        Invalid content is not applied; the error names the key and is
        logged once per distinct content; good content later is applied.
        """
        self.start()
        with capturedLogs() as events:
            self.write(GOOD + b"timeout: soon\n")
            self.reactor.pump([10, 10, 10])
            self.write(b"registries: [")
            self.reactor.advance(10)
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 2)
        self.assertIn("timeout:", errors[0]["problems"])
        self.assertIn("invalid YAML", errors[1]["problems"])
        self.assertEqual(self.published, [])
        self.assertEqual(self.password(), "one")
        self.write(GOOD.replace(b"admin:one", b"admin:three"))
        self.reactor.advance(10)
        self.assertEqual(self.password(), "three")

    def test_no_secret_in_error(self):
        """
        A YAML error on a line holding a password does not quote it.
        """
        self.start()
        with capturedLogs() as events:
            self.write(b"auth: admin:s3cret-pass\n  bad: [indent\n")
            self.reactor.advance(10)
        [error] = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertNotIn("s3cret-pass", error["problems"])

    def test_unreadable(self):
        """
        A file that cannot be read keeps the running config.
        """
        self.start()
        os.unlink(self.path)
        with capturedLogs() as events:
            self.reactor.pump([10, 10])
        self.assertEqual(len([e for e in events if e["log_level"] == LogLevel.error]), 1)
        self.assertEqual(self.password(), "one")

    def test_interval_followed(self):
        """
        A new reloadInterval applies to the reload itself.
        """
        self.start()
        self.write(GOOD.replace(b"reloadInterval: 10s", b"reloadInterval: 2s"))
        self.reactor.advance(10)
        self.write(GOOD.replace(b"admin:one", b"admin:four").replace(
            b"reloadInterval: 10s", b"reloadInterval: 2s"))
        self.reactor.advance(2)
        self.assertEqual(self.password(), "four")

    def test_restart_only(self):
        """
        Changes to shim, cri and force are reported as needing a restart and
        held back; the rest of the change applies.
        """
        self.start()
        with capturedLogs() as events:
            self.write(GOOD.replace(b"force: true", b"force: false") +
                       b"shim: /run/other.sock\ndebug: true\n")
            self.reactor.advance(10)
        current = self.holder.current.config
        self.assertEqual((current.force, current.shim, current.debug),
                         (True, config.DEFAULT_SHIM_SOCKET, True))
        [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(warning["keys"], "shim, force")

    def test_state_dir_restart_only(self):
        """
        A changed C{stateDir} is held back too: the names store was opened
        there at start.
        """
        self.start()
        with capturedLogs() as events:
            self.write(GOOD + b"stateDir: /srv/elsewhere\n")
            self.reactor.advance(10)
        self.assertEqual(self.holder.current.config.state_dir, config.DEFAULT_STATE_DIR)
        [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(warning["keys"], "state_dir")

    def test_sighup(self):
        """
        SIGHUP reloads at once; stopping restores the previous handler.
        """
        previous = signal.getsignal(signal.SIGHUP)
        reloader = self.start(handle_sighup=True)
        self.write(GOOD.replace(b"admin:one", b"admin:hup"))
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual(self.password(), "hup")
        reloader.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), previous)

    def test_empty_file_kept_out(self):
        """
        An empty file (an editor caught mid-write) does not replace the
        running config with defaults.
        """
        self.start()
        self.write(b"")
        self.reactor.advance(10)
        self.assertEqual(self.published, [])
        self.assertEqual(self.password(), "one")


class FileWorkTests(_ReloaderCase):
    """
    The file is read and written on the reactor's thread pool, one
    operation at a time, and the reloader's stop waits for the one in
    progress.
    """

    def test_read_on_pool(self):
        """
        The timer's read runs on the thread pool; nothing is published
        until it is done, and stopping waits for it.
        """
        reloader = self.start()
        self.write(GOOD.replace(b"admin:one", b"admin:two"))
        self.reactor.pool.hold = True
        self.reactor.advance(10)
        self.assertEqual(self.reactor.pool.calls, [read_config])
        self.assertEqual(self.published, [])
        stopped = reloader.stopService()
        self.assertNoResult(stopped)
        self.reactor.pool.deliver()
        self.successResultOf(stopped)
        self.assertEqual(self.password(), "two")

    def test_apply_writes_and_publishes_once(self):
        """
        A validated change is written (mode 0600) and published without
        reading or parsing the file again; its next tick sees no change.
        """
        self.start()
        text = GOOD.replace(b"admin:one", b"admin:applied")
        config, notices = schema.load(text)
        with capturedLogs() as events:
            self.successResultOf(self.reloader.apply(text, config, notices, "test"))
            self.reactor.advance(10)
        self.assertEqual(self.reactor.pool.calls, [write_atomically, read_config])
        self.assertEqual(len(self.published), 1)
        self.assertIs(self.published[0].config, config)
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), text)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual([e["reason"] for e in events if "reason" in e], ["test"])

    def test_read_in_progress_does_not_undo_apply(self):
        """
        A read that started before a change is applied cannot publish what
        it read after the change: the change waits for the read.
        """
        self.start()
        self.write(GOOD.replace(b"admin:one", b"admin:hand-edit"))
        self.reactor.pool.hold = True
        self.reactor.advance(10)
        text = GOOD.replace(b"admin:one", b"admin:applied")
        applied = self.reloader.apply(text, *schema.load(text), reason="test")
        self.assertNoResult(applied)
        # The write's result (had it started) first, then the read's.
        self.reactor.pool.deliver(last_first=True)
        self.reactor.pool.deliver()
        self.successResultOf(applied)
        self.assertEqual(self.password(), "applied")
        with open(self.path, "rb") as f:
            self.assertEqual(f.read(), text)
