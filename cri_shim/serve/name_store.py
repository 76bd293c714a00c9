# -*- test-case-name: tests.serve.test_name_store,tests.security.test_hardening_state -*-
"""
[worker threads] The requested-names store: the L{cri_shim.model.names}
map, kept in C{names.json} under the state folder and reconciled against the
runtime's images at start.

Worker threads read the current L{View} without locks (it is replaced, never
changed) and record or forget names on the thread of the call that pulled or
removed the image; that thread writes the file.  Losing the file (missing,
corrupt, unwritable) loses only the presentation: pulls and status calls
never fail on it, and it is logged once.

The folder and the file are input from outside.  The folder must belong to
the shim's user and be writable by nobody else; otherwise it is neither
read nor written (an error names C{stateDir}), and the names live in memory
only.  The file is read only if it is a regular file of at most
L{MAX_FILE_BYTES}, opened without following a symbolic link or waiting on a
FIFO, and replaced, never written through.
"""

import errno
import os
import stat
import threading

from twisted.application import service
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from cri_shim.files import replace_in
from cri_shim.model import names

#: The store's file, in the state folder.
FILE_NAME = "names.json"
#: The largest file read back; a bigger one is not ours.
MAX_FILE_BYTES = 1024 * 1024


class StateDirError(Exception):
    """
    The state folder is not one the shim may trust; the message says why.
    """


def _open_folder(path, create=False):
    """
    Open the state folder, checking that only the shim's user can change
    what is in it: owned by that user (root, in production), not writable by
    group or others.

    :param create: make the folder, mode 0700, when it is missing.
    :return: a descriptor of the folder.
    :raise StateDirError: it is not a folder the shim may trust.
    :raise OSError: it cannot be opened (C{FileNotFoundError}: it is
        missing, and not to be made).
    """
    if create:
        os.makedirs(path, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise StateDirError("not a folder")
    status = os.fstat(fd)
    mode = stat.S_IMODE(status.st_mode)
    problem = None
    if status.st_uid != os.geteuid():
        problem = "owned by uid {}, not by the shim's user (uid {})".format(
            status.st_uid, os.geteuid())
    elif mode & 0o022:
        problem = "mode {:04o}: group or others may write in it".format(mode)
    if problem is not None:
        os.close(fd)
        raise StateDirError(problem)
    return fd


def _read_file(folder):
    """
    :param folder: a descriptor from L{_open_folder}.
    :return: the bytes of L{FILE_NAME} in it.
    :raise FileNotFoundError: there is none.
    :raise ValueError: it is not a regular file of at most
        L{MAX_FILE_BYTES}, or a symbolic link (not followed).
    """
    try:
        fd = os.open(FILE_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                     | os.O_CLOEXEC, dir_fd=folder)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError("a symbolic link, not followed")
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError("not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError("larger than {} bytes".format(MAX_FILE_BYTES))
    return data


class NameStore:
    """
    :param folder: the state folder (config C{stateDir}); made mode 0700
        when missing.
    :param limit: names remembered at most.
    :param write: L{replace_in}, or a stand-in for tests.
    :ivar view: the current L{names.View}; read it from any thread.
    """

    log = Logger()

    def __init__(self, folder, limit=names.MAX_NAMES, write=replace_in):
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
            return names.NameMap.load(self._read(), limit)
        except FileNotFoundError:
            return names.NameMap(limit)
        except StateDirError as e:
            self._refused(e)
            return names.NameMap(limit)
        # The file is input: whatever it holds (nesting deep enough for a
        # RecursionError, bytes that are not UTF-8) costs only the names.
        except Exception as e:
            self._failing = True
            self.log.warn(
                "names store {path} unusable ({reason}); starting without it: images pulled "
                "before show under their registry names until pulled again",
                path=self.path, reason=_reason(e))
            return names.NameMap(limit)

    def _read(self):
        folder = _open_folder(self.folder)
        try:
            return _read_file(folder)
        finally:
            os.close(folder)

    def _refused(self, error):
        self._failing = True
        self.log.error("stateDir {folder} refused ({reason}): requested names are kept in "
                       "memory only, neither read from nor written to it",
                       folder=self.folder, reason=error)

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
                folder = _open_folder(self.folder, create=True)
                try:
                    self._write(folder, FILE_NAME, data, 0o600)
                finally:
                    os.close(folder)
            except StateDirError as e:
                if not self._failing:
                    self._refused(e)
                return
            except OSError as e:
                if not self._failing:
                    self._failing = True
                    self.log.warn("names store {path} cannot be written ({reason}); requested "
                                  "names are kept in memory only", path=self.path,
                                  reason=_reason(e))
                return
            if self._failing:
                self._failing = False
                self.log.info("names store {path} written again", path=self.path)


def _reason(error):
    """
    :return: what went wrong, for the log.
    """
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


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
