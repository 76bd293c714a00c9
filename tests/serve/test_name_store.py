"""
Tests for L{cri_shim.serve.name_store}: the file, its loss, and the
reconciliation at start.
"""

import os
import shutil
import tempfile

from twisted.logger import LogLevel, capturedLogs
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.files import write_atomically
from cri_shim.model.reference import parse
from cri_shim.serve.name_store import MAX_FILE_BYTES, NameStore, ReconcileService

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

        def write(path, data, mode):
            if failing:
                raise PermissionError(13, "Permission denied")
            write_atomically(path, data, mode)

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


