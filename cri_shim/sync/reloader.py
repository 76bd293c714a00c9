# -*- test-case-name: tests.sync.test_reloader -*-
"""
Hot reload of the config file: re-read every C{reloadInterval} and on
SIGHUP; a new valid content is published as a new snapshot, an invalid one
is reported once and the last good config keeps running.
"""

import hashlib
import signal

import attr
from twisted.application import service
from twisted.logger import Logger, LogLevel

from cri_shim.model import config as configuration, schema
from cri_shim.metrics import Metrics
from cri_shim.sync.ticker import Ticker

#: Settings that only take effect at start.
RESTART_ONLY = ("shim", "cri", "force", "admin", "admin_token_file", "state_dir")


class ConfigReloader(service.Service):
    """
    :param path: the config file.
    :param holder: the L{cri_shim.snapshot.SnapshotHolder} to publish to.
    :param reactor: C{IReactorTime} and C{IReactorThreads} (for SIGHUP).
    :param loaded: the bytes the running config was loaded from.
    :param handle_sighup: whether to install the SIGHUP handler.
    """

    name = "config-reload"
    log = Logger()

    def __init__(self, path, holder, reactor, loaded, handle_sighup=True, metrics=None):
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
        self._ticker = Ticker(lambda: self.reload("timer"), reactor, "config reload")
        holder.subscribe(self._follow_interval)

    def startService(self):
        service.Service.startService(self)
        self._ticker.start(self._holder.current.config.reload_interval)
        if self._handle_sighup:
            self._previous_handler = signal.signal(signal.SIGHUP, self._sighup)

    def stopService(self):
        service.Service.stopService(self)
        self._ticker.stop()
        if self._handle_sighup:
            signal.signal(signal.SIGHUP, self._previous_handler or signal.SIG_DFL)

    def _sighup(self, signum, frame):
        # A signal handler may interrupt the reactor anywhere: hand over.
        self._reactor.callFromThread(self.reload, "SIGHUP")

    def _follow_interval(self, snapshot):
        self._ticker.set_interval(snapshot.config.reload_interval)

    def reload(self, reason):
        """
        Re-read the file and publish it if it changed and is valid.

        :param reason: why (C{"timer"}, C{"SIGHUP"}, the ConfigMap...), for
            the log.
        :return: whether a new configuration was published.
        """
        try:
            with open(self.path, "rb") as f:
                text = f.read(configuration.MAX_CONFIG_BYTES + 1)
        except OSError as e:
            return self._reject(("cannot read it: {}".format(e.strerror or e),),
                                "unreadable:{}".format(e.errno))
        digest = _digest(text)
        if digest == self._good:
            self._bad = None
            if reason == "SIGHUP":
                self.log.info("SIGHUP: {path} unchanged", path=self.path)
            return False
        if digest == self._bad:
            return False
        try:
            # Only comments (the start of a file being written, most
            # likely) must not replace the running config with defaults.
            new, notices = schema.load(text, source=self.path, require_settings=True)
        except configuration.ConfigError as e:
            return self._reject(e.problems, digest)
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
        return True

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
