"""
Tests for L{cri_shim.serve.name_store}: the file, its loss, the folder and
file checks, and the reconciliation at start.
"""

import json
import os
import shutil
import tempfile
import threading

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.files import replace_in
from cri_shim.model.reference import parse
from cri_shim.serve.name_store import MAX_FILE_BYTES, NameStore, ReconcileService

#: How long a test waits for a start that would hang on a FIFO before it
#: unblocks it and fails (never waited for when the start does not hang).
FIFO_LIMIT = 30.0
#: A user the tests give folders to.
NOBODY = 65534


def open_fifo_after(path, limit):
    """
    Open the FIFO C{path} for writing (and close it) after C{limit} seconds,
    which ends the wait of anyone opening it for reading.

    :return: the started L{threading.Timer}; C{.finished} is set once it
        has run or was cancelled, C{.fired} once it opened the FIFO.
    """
    def unblock():
        timer.fired = True
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(limit, unblock)
    timer.fired = False
    timer.daemon = True
    timer.start()
    return timer


def names_document(pairs):
    """
    :return: the bytes of a store file holding C{pairs} (requested name,
        stored name), as the store writes it.
    """
    store_map = NameStore(tempfile.mkdtemp(prefix="ics-", dir="/tmp"))
    for requested, stored in pairs:
        store_map._map.record(parse(requested), parse(stored))
    shutil.rmtree(store_map.folder)
    return store_map._map.dump()

NGINX = parse("docker.io/library/nginx:latest")
HUB = parse("sealos.hub:5000/library/nginx:latest")
APP = parse("docker.io/library/app:1")
HUB_APP = parse("sealos.hub:5000/library/app:1")


class _SyncPool(ThreadPool):
    """
    A thread pool that runs its work at once, on the calling thread.
    """

    def callInThreadWithCallback(self, onResult, func, *args, **kwargs):
        try:
            result = func(*args, **kwargs)
        except BaseException as e:
            onResult(False, e)
        else:
            onResult(True, result)


class _Reactor:
    def __init__(self):
        self.pool = _SyncPool()

    def getThreadPool(self):
        return self.pool

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class NameStoreTests(SynchronousTestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.folder = os.path.join(self.root, "state")

    def warnings(self, events):
        return [event for event in events if event["log_level"] == LogLevel.warn]

    def test_kept_across_restarts(self):
        """
        A new store on the same folder has the names recorded before.
        """
        NameStore(self.folder).thd_record(NGINX, HUB)
        self.assertEqual(NameStore(self.folder).view.targets, {str(NGINX): str(HUB)})

    def test_missing_folder_quiet(self):
        """
        No folder, no file: an empty store, nothing logged, nothing written.
        """
        with capturedLogs() as events:
            store = NameStore(self.folder)
        self.assertEqual((store.view.targets, events), ({}, []))
        self.assertFalse(os.path.exists(self.folder))

    def test_corrupt_survived(self):
        """
        A corrupt or oversized file is logged once and replaced by the next
        change.
        """
        os.makedirs(self.folder)
        path = os.path.join(self.folder, "names.json")
        for data in (b'{"format": 1, "names": [["a", "Not Valid"]]}', b"{",
                     b" " * (MAX_FILE_BYTES + 1)):
            with open(path, "wb") as f:
                f.write(data)
            with capturedLogs() as events:
                store = NameStore(self.folder)
                store.thd_record(NGINX, HUB)
            self.assertEqual(len(self.warnings(events)), 1)
            self.assertEqual(NameStore(self.folder).view.targets, {str(NGINX): str(HUB)})

    def test_unwritable_logged_once(self):
        """
        A folder that cannot be made is logged once; the names are kept in
        memory, and a write that works again is logged.
        """
        failing = []

        def write(folder, name, data, mode):
            if failing:
                raise PermissionError(13, "Permission denied")
            replace_in(folder, name, data, mode)

        store = NameStore(self.folder, write=write)
        failing.append(True)
        with capturedLogs() as events:
            store.thd_record(NGINX, HUB)
            store.thd_record(APP, HUB_APP)
        self.assertEqual(len(self.warnings(events)), 1)
        self.assertEqual(len(store.view.targets), 2)
        failing.pop()
        with capturedLogs() as events:
            store.thd_forget([str(HUB_APP)])
        self.assertEqual([event["log_level"] for event in events], [LogLevel.info])
        self.assertEqual(NameStore(self.folder).view.targets, {str(NGINX): str(HUB)})

    def test_reconcile(self):
        """
        Names whose image the runtime no longer holds are forgotten, and the
        file rewritten; an empty store does not ask the runtime.
        """
        store = NameStore(self.folder)
        store.thd_record(NGINX, HUB)
        store.thd_record(APP, HUB_APP)
        store.thd_reconcile(lambda: [str(HUB_APP), "quay.io/x:1"])
        self.assertEqual(NameStore(self.folder).view.targets, {str(APP): str(HUB_APP)})
        NameStore(os.path.join(self.root, "other")).thd_reconcile(lambda: 1 / 0)


class StateFolderTests(SynchronousTestCase):
    """
    The state folder and the file are input from outside: a folder another
    user can change is neither read nor written, and the file is read only
    as a regular file, never through a link or a FIFO.
    """

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.folder = os.path.join(self.root, "state")
        os.mkdir(self.folder, 0o700)
        self.path = os.path.join(self.folder, "names.json")
        # A file only root may read or write, outside the state folder.
        self.victim = os.path.join(self.root, "shadow")
        with open(self.victim, "wb") as f:
            f.write(names_document([(str(APP), str(HUB_APP))]))
        os.chmod(self.victim, 0o600)
        with open(self.victim, "rb") as f:
            self.victim_bytes = f.read()

    def assertVictimUntouched(self):
        with open(self.victim, "rb") as f:
            self.assertEqual(f.read(), self.victim_bytes)
        self.assertEqual(os.stat(self.victim).st_mode & 0o777, 0o600)

    def levels(self, events):
        return [event["log_level"] for event in events]

    def test_folder_of_another_user_or_open_refused(self):
        """
        A folder owned by another user, or that group or others may write
        in, is refused with an error naming C{stateDir} and the folder: the
        file there is not read, changes are not written, and the names are
        kept in memory, logged once.
        """
        document = names_document([(str(APP), str(HUB_APP))])
        for change, reason in [((os.chown, NOBODY, -1), "owned by uid 65534"),
                               ((os.chmod, 0o777), "mode 0777"),
                               ((os.chmod, 0o720), "mode 0720"),
                               ((os.chmod, 0o702), "mode 0702")]:
            os.chown(self.folder, 0, 0)
            os.chmod(self.folder, 0o700)
            with open(self.path, "wb") as f:
                f.write(document)
            change[0](self.folder, *change[1:])
            with capturedLogs() as events:
                store = NameStore(self.folder)
                store.thd_record(NGINX, HUB)
                store.thd_forget([str(HUB)])
                store.thd_record(NGINX, HUB)
            self.assertEqual(self.levels(events), [LogLevel.error], reason)
            text = formatEvent(events[0])
            self.assertIn("stateDir {} refused".format(self.folder), text)
            self.assertIn(reason, text)
            self.assertEqual(store.view.targets, {str(NGINX): str(HUB)})
            with open(self.path, "rb") as f:
                self.assertEqual(f.read(), document)

    def test_folder_made_private(self):
        """
        A missing folder is made mode 0700 at the first change; a folder
        made private again is written to again.
        """
        os.rmdir(self.folder)
        NameStore(self.folder).thd_record(NGINX, HUB)
        self.assertEqual(os.stat(self.folder).st_mode & 0o777, 0o700)
        os.chmod(self.folder, 0o777)
        store = NameStore(self.folder)
        os.chmod(self.folder, 0o755)
        with capturedLogs() as events:
            store.thd_record(APP, HUB_APP)
        self.assertEqual(self.levels(events), [LogLevel.info])
        self.assertEqual(NameStore(self.folder).view.targets, {str(APP): str(HUB_APP)})

    def test_not_a_folder(self):
        """
        A C{stateDir} that is a file is refused, naming C{stateDir}.
        """
        os.rmdir(self.folder)
        with open(self.folder, "wb"):
            pass
        with capturedLogs() as events:
            store = NameStore(self.folder)
            store.thd_record(NGINX, HUB)
        self.assertEqual(self.levels(events), [LogLevel.error])
        self.assertIn("stateDir {} refused (not a folder)".format(self.folder),
                      formatEvent(events[0]))
        self.assertEqual(store.view.targets, {str(NGINX): str(HUB)})

    def test_link_never_followed(self):
        """
        A symbolic link at C{names.json}, here to a root-only file, is
        neither read through nor written through: the next change replaces
        the link with the store's own file.
        """
        os.symlink(self.victim, self.path)
        with capturedLogs() as events:
            store = NameStore(self.folder)
        self.assertEqual(store.view.targets, {})
        self.assertEqual(self.levels(events), [LogLevel.warn])
        self.assertIn("symbolic link", formatEvent(events[0]))
        store.thd_record(NGINX, HUB)
        self.assertVictimUntouched()
        self.assertFalse(os.path.islink(self.path))
        self.assertEqual(NameStore(self.folder).view.targets, {str(NGINX): str(HUB)})
        self.assertEqual(sorted(os.listdir(self.folder)), ["names.json"])

    def test_link_in_refused_folder(self):
        """
        In a folder another user owns, a link at C{names.json} to a
        root-only file is never written through.
        """
        os.symlink(self.victim, self.path)
        os.chown(self.folder, NOBODY, NOBODY)
        store = NameStore(self.folder)
        store.thd_record(NGINX, HUB)
        self.assertVictimUntouched()
        self.assertEqual(os.readlink(self.path), self.victim)

    def test_fifo_not_waited_on(self):
        """
        A FIFO at C{names.json} is not waited on: the store starts empty
        (with a warning), and the next change replaces it.  (Were the start
        to wait, a writer would end the wait after L{FIFO_LIMIT} seconds and
        the test would fail.)
        """
        os.mkfifo(self.path, 0o600)
        watchdog = open_fifo_after(self.path, FIFO_LIMIT)
        self.addCleanup(watchdog.cancel)
        with capturedLogs() as events:
            store = NameStore(self.folder)
        watchdog.cancel()
        self.assertFalse(watchdog.fired, "the start waited on the FIFO")
        self.assertEqual(store.view.targets, {})
        self.assertEqual(self.levels(events), [LogLevel.warn])
        self.assertIn("not a regular file", formatEvent(events[0]))
        store.thd_record(NGINX, HUB)
        self.assertEqual(NameStore(self.folder).view.targets, {str(NGINX): str(HUB)})

    def test_not_regular(self):
        """
        A folder at C{names.json} is not a store either.
        """
        os.mkdir(self.path)
        with capturedLogs() as events:
            store = NameStore(self.folder)
        self.assertEqual(store.view.targets, {})
        self.assertIn("not a regular file", formatEvent(events[0]))

    def test_any_content_survived(self):
        """
        Whatever the file holds, the store starts (empty), with one
        warning: nesting deep enough for a RecursionError, bytes that are
        not UTF-8, JSON of another shape.
        """
        for data in [b"[" * 400000, b"{" * 200000, b'"\xff\xfe"', b"\xff\xfe{}",
                     json.dumps({"format": 1, "names": {"a": 1}}).encode(),
                     json.dumps([[["x"] * 3] * 3]).encode()]:
            with open(self.path, "wb") as f:
                f.write(data)
            with capturedLogs() as events:
                store = NameStore(self.folder)
            self.assertEqual(store.view.targets, {}, data[:20])
            self.assertEqual(self.levels(events), [LogLevel.warn], data[:20])
            self.assertIn("names store {} unusable".format(self.path), formatEvent(events[0]))


class ReconcileServiceTests(SynchronousTestCase):
    def test_start_reconciles(self):
        """
        Starting reconciles on the reactor's thread pool; stopping waits for
        it.
        """
        folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, folder, True)
        store = NameStore(folder)
        store.thd_record(NGINX, HUB)
        service = ReconcileService(store, lambda: [], _Reactor())
        service.startService()
        self.assertEqual(store.view.targets, {})
        self.assertIsNone(self.successResultOf(service.stopService()))

    def test_runtime_silent(self):
        """
        A runtime that does not list its images leaves the store as it is,
        with a line in the log.
        """
        folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, folder, True)
        store = NameStore(folder)
        store.thd_record(NGINX, HUB)

        def fail():
            raise OSError("runtime down")

        with capturedLogs() as events:
            ReconcileService(store, fail, _Reactor()).startService()
        self.assertEqual(store.view.targets, {str(NGINX): str(HUB)})
        self.assertIn("runtime down", events[-1]["error"])


