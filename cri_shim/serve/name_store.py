# -*- test-case-name: tests.serve.test_name_store -*-
"""
[worker threads] The requested-names store: the L{cri_shim.model.names}
map, kept in C{names.json} under the state folder and reconciled against the
runtime's images at start.

Worker threads read the current L{View} without locks (it is replaced, never
changed) and record or forget names on the thread of the call that pulled or
removed the image; that thread writes the file.  Losing the file (missing,
corrupt, unwritable) loses only the presentation: pulls and status calls
never fail on it, and it is logged once.
"""

import os
import threading

from twisted.application import service
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from cri_shim.files import write_atomically
from cri_shim.model import names

#: The store's file, in the state folder.
FILE_NAME = "names.json"
#: The largest file read back; a bigger one is not ours.
MAX_FILE_BYTES = 1024 * 1024


class NameStore:
    """
    :param folder: the state folder (config C{stateDir}); made mode 0700
        when missing.
    :param limit: names remembered at most.
    :param write: C{write_atomically}, or a stand-in for tests.
    :ivar view: the current L{names.View}; read it from any thread.
    """

    log = Logger()

    def __init__(self, folder, limit=names.MAX_NAMES, write=write_atomically):
        self.folder = folder
        self.path = os.path.join(folder, FILE_NAME)
        self._write = write
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._failing = False
        self._map = self._load(limit)
        self.view = self._map.view()

    def _load(self, limit):
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise ValueError("larger than {} bytes".format(MAX_FILE_BYTES))
            return names.NameMap.load(data, limit)
        except FileNotFoundError:
            return names.NameMap(limit)
        except (OSError, ValueError) as e:
            self._failing = True
            self.log.warn(
                "names store {path} unusable ({reason}); starting without it: images pulled "
                "before show under their registry names until pulled again",
                path=self.path, reason=getattr(e, "strerror", None) or e)
            return names.NameMap(limit)

    def thd_record(self, requested, stored, scope=()):
        """
        Remember that C{requested} was pulled as C{stored} (references) for
        C{scope} (L{cri_shim.model.rewrite.scope}).
        """
        self._change(lambda: self._map.record(requested, stored, scope))

    def thd_forget(self, image_names):
        """
        Forget the names requested as, or stored under, C{image_names}.
        """
        self._change(lambda: self._map.forget(image_names))

    def thd_reconcile(self, list_names):
        """
        Forget the names whose image the runtime no longer holds.

        :param list_names: a blocking callable returning every name the
            runtime holds images under (tags and digests).
        """
        with self._lock:
            mark = self._map.mark()
            empty = not len(self._map)
        if empty:
            return
        present = frozenset(list_names())
        dropped = self._change(lambda: self._map.reconcile(present, mark))
        if dropped:
            self.log.info("names store: forgot {count} names whose image is gone",
                          count=dropped)

    def _change(self, change):
        """
        :return: what C{change} returned; when true, the view is rebuilt
            and the file written.
        """
        with self._lock:
            changed = change()
            if changed:
                self.view = self._map.view()
        if changed:
            self._save()
        return changed

    def _save(self):
        # One writer at a time, each writing the map as it is then: the
        # last write holds the last change.
        with self._write_lock:
            with self._lock:
                data = self._map.dump()
            try:
                os.makedirs(self.folder, mode=0o700, exist_ok=True)
                self._write(self.path, data, 0o600)
            except OSError as e:
                if not self._failing:
                    self._failing = True
                    self.log.warn("names store {path} cannot be written ({reason}); requested "
                                  "names are kept in memory only", path=self.path,
                                  reason=e.strerror or e)
                return
            if self._failing:
                self._failing = False
                self.log.info("names store {path} written again", path=self.path)


class ReconcileService(service.Service):
    """
    At start, reconcile the store against the runtime's images on a thread
    of C{reactor}'s pool; a runtime that does not answer leaves the store
    as it is.

    :param list_names: see L{NameStore.thd_reconcile}.
    """

    name = "names"
    log = Logger()

    def __init__(self, store, list_names, reactor):
        self._store = store
        self._list_names = list_names
        self._reactor = reactor
        self._running = None

    def startService(self):
        service.Service.startService(self)
        d = deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                              self._store.thd_reconcile, self._list_names)
        d.addErrback(lambda failure: self.log.info(
            "names store not reconciled: the runtime did not list its images ({error})",
            error=failure.getErrorMessage()))
        self._running = d

    def stopService(self):
        service.Service.stopService(self)
        return self._running
