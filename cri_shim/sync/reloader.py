# -*- test-case-name: tests.sync.test_reloader -*-
"""
Hot reload of the config file: re-read every C{reloadInterval} (jittered)
and on SIGHUP, which also tells whoever asked (the ConfigMap sync lists
again); a new valid content is published as a new snapshot, an invalid one
is reported once and the last good config keeps running.  The ConfigMap
sync's validated changes are written and published here too: this is the
config file's one reader and writer on the reactor, and the one publisher of
configurations.
"""

import hashlib
import os
import random
import signal

import attr
from twisted.application import service
from twisted.internet.defer import DeferredLock, inlineCallbacks, returnValue
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger, LogLevel

from cri_shim.model import config as configuration, schema
from cri_shim.metrics import Metrics
from cri_shim.files import write_atomically
from cri_shim.sync.configfile import mode_notices, read_config
from cri_shim.sync.ticker import Ticker

#: Settings that only take effect at start.
RESTART_ONLY = ("shim", "cri", "force", "admin", "admin_token_file", "state_dir")


class ConfigReloader(service.Service):
    """
    :param path: the config file.
    :param holder: the L{cri_shim.snapshot.SnapshotHolder} to publish to.
    :param reactor: C{IReactorTime} and C{IReactorThreads}: the file is
        read and written on its thread pool.
    :param loaded: the bytes the running config was loaded from.
    :param handle_sighup: whether to install the SIGHUP handler.
    :param write: writes the file (L{write_atomically}; tests pass faults).
    :param uniform: the random source of the reload timer's jitter.
    """

    name = "config-reload"
    log = Logger()

    def __init__(self, path, holder, reactor, loaded, handle_sighup=True, metrics=None,
                 write=write_atomically, uniform=random.random):
        self._metrics = metrics or Metrics()
        #: When the running configuration was last loaded (reactor seconds).
        self.last_success = reactor.seconds()
        self.path = path
        self._holder = holder
        self._reactor = reactor
        self._good = _digest(loaded)
        self._bad = None
        self._handle_sighup = handle_sighup
        self._previous_handler = None
        self._write = write
        # Held by each reload and each write, so that a reload whose read
        # started before a ConfigMap write cannot publish the old content
        # after it.
        self._lock = DeferredLock()
        self._ticker = Ticker(lambda: self.reload("timer"), reactor, "config reload", uniform)
        self._on_sighup = []
        holder.subscribe(self._follow_interval)

    def startService(self):
        service.Service.startService(self)
        self._ticker.start(self._holder.current.config.reload_interval)
        if self._handle_sighup:
            self._previous_handler = signal.signal(signal.SIGHUP, self._sighup)

    def stopService(self):
        """
        :return: a Deferred that fires when the read or write in progress,
            if any, is done.
        """
        service.Service.stopService(self)
        self._ticker.stop()
        if self._handle_sighup:
            signal.signal(signal.SIGHUP, self._previous_handler or signal.SIG_DFL)
        return self._lock.run(lambda: None)

    def also_on_sighup(self, callback):
        """
        Call C{callback(reason)} on the reactor at each SIGHUP too.
        """
        self._on_sighup.append(callback)

    def _sighup(self, signum, frame):
        # A signal handler may interrupt the reactor anywhere: hand over.
        self._reactor.callFromThread(self.hang_up)

    def hang_up(self):
        """
        What SIGHUP does: re-read the file, and tell the others.

        :return: L{reload}'s Deferred.
        """
        for callback in self._on_sighup:
            callback("SIGHUP")
        return self.reload("SIGHUP")

    def _follow_interval(self, snapshot):
        self._ticker.set_interval(snapshot.config.reload_interval)

    def _in_thread(self, f, *args, **kwargs):
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), f, *args,
                                 **kwargs)

    def read(self):
        """
        Read the file on the thread pool (see L{read_config}).

        :return: a Deferred firing with C{(text, mode)}.
        """
        return self._in_thread(read_config, self.path)

    def reload(self, reason):
        """
        Re-read the file and publish it if it changed and is valid.

        :param reason: why (C{"timer"}, C{"SIGHUP"}, an admin request...),
            for the log.
        :return: a Deferred firing with whether a new configuration was
            published.
        """
        return self._lock.run(self._reload, reason)

    @inlineCallbacks
    def _reload(self, reason):
        try:
            text, mode = yield self.read()
        except OSError as e:
            returnValue(self._reject(("cannot read it: {}".format(e.strerror or e),),
                                     "unreadable:{}".format(e.errno)))
        digest = _digest(text)
        if digest == self._good:
            self._bad = None
            if reason == "SIGHUP":
                self.log.info("SIGHUP: {path} unchanged", path=self.path)
            returnValue(False)
        if digest == self._bad:
            returnValue(False)
        try:
            # Only comments (the start of a file being written, most
            # likely) must not replace the running config with defaults.
            new, notices = schema.load(text, source=self.path, require_settings=True)
        except configuration.ConfigError as e:
            returnValue(self._reject(e.problems, digest))
        self._publish(digest, new, notices + mode_notices(mode, new), reason)
        returnValue(True)

    def apply(self, text, config, notices, reason):
        """
        Write a validated change (the ConfigMap merged into the file) and
        publish it, without reading or parsing it again.  The file's next
        reload sees no change.

        :param text: the file's new content, C{bytes}.
        :param config: the L{configuration.Config} read from C{text}.
        :param notices: the notices reading C{text} gave.
        :param reason: why, for the log.
        :return: a Deferred firing when it is published.
        :raise OSError: (in the Deferred) when the file cannot be written;
            it is then unchanged and nothing is published.
        """
        return self._lock.run(self._apply, text, config, notices, reason)

    @inlineCallbacks
    def _apply(self, text, config, notices, reason):
        written = yield self._in_thread(self._write, self.path, text, mode=0o600)
        if written != os.path.abspath(self.path):
            self.log.info("{path} leads through a symbolic link: wrote its target {target} "
                          "(mode 0600, owner and group kept)", path=self.path, target=written)
        self._publish(_digest(text), config, notices, reason)

    def _publish(self, digest, new, notices, reason):
        running = self._holder.current.config
        changed = [name for name in RESTART_ONLY if getattr(new, name) != getattr(running, name)]
        if changed:
            self.log.warn(
                "{path}: changes to {keys} need a restart of the shim to take effect; "
                "everything else is applied now", path=self.path, keys=", ".join(changed))
            new = attr.evolve(new, **{name: getattr(running, name) for name in RESTART_ONLY})
        log_notices(self.log, self.path, notices)
        self._good, self._bad = digest, None
        self.last_success = self._reactor.seconds()
        self._metrics.reloads.inc("success")
        self._holder.publish(new)
        self.log.info("reloaded {path} ({reason})", path=self.path, reason=reason)

    def _reject(self, problems, key):
        if key != self._bad:
            self._metrics.reloads.inc("failure")
            self._bad = key
            self.log.error(
                "{path} is not valid; the last good configuration keeps running:\n  "
                "{problems}", path=self.path, problems="\n  ".join(problems))
        return False


def log_notices(log, path, notices):
    """
    Log a config file's notices (see L{configuration.Notice}) at their level.
    """
    for notice in notices:
        level = LogLevel.warn if notice.level == "warn" else LogLevel.info
        log.emit(level, "{path}: {notice}", path=path, notice=notice.message)


def _digest(text):
    return hashlib.sha256(text).hexdigest()
