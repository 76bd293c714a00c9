"""
Hardening of the state folder and C{names.json} (issue 17, item 2), each
against what the issue's attacker did, on the shim's service tree as
L{cri_shim.tap.makeService} builds it:

  - L{OtherUsersFolderTests} (a): a C{stateDir} another user owns, or may
    write in, is refused with an error naming C{stateDir}; a link that user
    planted at C{names.json} towards a root-only file is never written
    through, by the start or by a pull;
  - L{HostileFileTests} (b, d): a FIFO at C{names.json} does not hang the
    start, and a file of 400 KB of nested brackets does not stop it: the
    shim starts with no names, logged once.
"""

import os
import shutil
import tempfile

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from cri_shim import tap
from cri_shim.model.reference import parse
from tests.serve.test_name_store import (
    FIFO_LIMIT, NOBODY, names_document, open_fifo_after)
from tests.test_tap import _Reactor

REQUESTED = parse("docker.io/library/nginx:latest")
STORED = parse("sealos.hub:5000/library/nginx:latest")


def _of_store(events):
    return [event for event in events
            if event["log_namespace"].startswith("cri_shim.serve.name_store.")]


class _ShimCase(SynchronousTestCase):
    """
    A config whose C{stateDir} is C{self.state}, made mode 0700; the root-only
    file C{self.victim} beside it.
    """

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.state = os.path.join(self.root, "state")
        os.mkdir(self.state, 0o700)
        self.names = os.path.join(self.state, "names.json")
        self.victim = os.path.join(self.root, "shadow")
        with open(self.victim, "wb") as f:
            f.write(b"root:secret-hash:19000:0:99999:7:::\n")
        os.chmod(self.victim, 0o600)
        path = os.path.join(self.root, "shim.yaml")
        with open(path, "w") as f:
            f.write("shim: {0}/shim.sock\ncri: {0}/cri.sock\nforce: true\n"
                    "address: http://sealos.hub:5000\nadmin: {0}/admin.sock\n"
                    "stateDir: {1}\n".format(self.root, self.state))
        self.options = tap.Options()
        self.options.parseOptions(["--config", path])

    def start(self):
        """
        :return: the names store of a shim built from the config, and what
            the store logged meanwhile.
        """
        with capturedLogs() as events:
            root = tap.makeService(self.options, _Reactor())
        return root.getServiceNamed("names")._store, _of_store(events)

    def assertVictimUntouched(self):
        with open(self.victim, "rb") as f:
            self.assertEqual(f.read(), b"root:secret-hash:19000:0:99999:7:::\n")


class OtherUsersFolderTests(_ShimCase):
    def test_link_to_root_only_file_never_written(self):
        """
        In a C{stateDir} owned by another user (or open to every user), that
        user's link at C{names.json} to a root-only file is not followed by
        the start nor by the next pull; the folder is refused with one
        error naming C{stateDir} and the folder, and the pulled name is
        shown from memory.
        """
        os.symlink(self.victim, self.names)
        for change in [(os.chown, NOBODY, NOBODY), (os.chmod, 0o777)]:
            os.chown(self.state, 0, 0)
            os.chmod(self.state, 0o700)
            change[0](self.state, *change[1:])
            store, events = self.start()
            with capturedLogs() as more:
                store.thd_record(REQUESTED, STORED)
            self.assertVictimUntouched()
            self.assertEqual(os.readlink(self.names), self.victim)
            self.assertEqual([event["log_level"] for event in events + _of_store(more)],
                             [LogLevel.error])
            errors = [formatEvent(event) for event in events
                      if event["log_level"] == LogLevel.error]
            self.assertIn("stateDir {} refused".format(self.state), errors[0])
            self.assertEqual(store.view.targets, {str(REQUESTED): str(STORED)})

    def test_names_of_refused_folder_not_read(self):
        """
        A store file in a refused folder is not read: whoever wrote it
        cannot choose what images are shown as.
        """
        with open(self.names, "wb") as f:
            f.write(names_document([(str(REQUESTED), "evil.example/x:1")]))
        os.chown(self.state, NOBODY, NOBODY)
        store, _ = self.start()
        self.assertEqual(store.view.targets, {})


class HostileFileTests(_ShimCase):
    def test_fifo_does_not_hang_start(self):
        """
        With a FIFO at C{names.json}, the shim is built at once, with no
        names and one warning.  (Were the start to wait, a writer would end
        the wait after L{FIFO_LIMIT} seconds and the test would fail.)
        """
        os.mkfifo(self.names, 0o600)
        watchdog = open_fifo_after(self.names, FIFO_LIMIT)
        self.addCleanup(watchdog.cancel)
        store, events = self.start()
        watchdog.cancel()
        self.assertFalse(watchdog.fired, "the start waited on the FIFO")
        self.assertEqual(store.view.targets, {})
        warnings = [formatEvent(event) for event in events
                    if event["log_level"] >= LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("not a regular file", warnings[0])

    def test_nested_file_does_not_stop_start(self):
        """
        400 KB of nested brackets (a RecursionError in the JSON decoder)
        cost the names only: the shim is built, logged once, and the next
        pull writes a good file.
        """
        with open(self.names, "wb") as f:
            f.write(b"[" * 400 * 1024)
        store, events = self.start()
        self.assertEqual(store.view.targets, {})
        warnings = [formatEvent(event) for event in events
                    if event["log_level"] >= LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("names store {} unusable".format(self.names), warnings[0])
        store.thd_record(REQUESTED, STORED)
        store, _ = self.start()
        self.assertEqual(store.view.targets, {str(REQUESTED): str(STORED)})
