# -*- test-case-name: tests.sync.test_configmap -*-
"""
The ConfigMap merged into the local config file: validated, then handed to
the file reloader, which writes it (atomically, mode 0600, only when it
changes) and publishes it.  Only the last ConfigMap seen matters: one that
comes while a merge is in progress is merged right after it.  What was
merged, or refused, is remembered, so the same ConfigMap over the same file
is neither written nor reported twice.
"""

import hashlib

from twisted.internet.defer import Deferred, inlineCallbacks, returnValue, succeed
from twisted.logger import Logger

from cri_shim.model import config as configuration, merge, schema
from cri_shim.model.reader import parse_yaml
from cri_shim.sync.reloader import log_notices


class Skip(Exception):
    """
    The sync's attempt ends here; C{condition} says why (logged when it
    changes).
    """

    def __init__(self, condition, log_format, level="info", outage=False, **fields):
        Exception.__init__(self, condition)
        self.condition = condition
        self.log_format = log_format
        self.level = level
        self.outage = outage
        self.fields = fields


#: Conditions of the file, not of the ConfigMap: the merge is tried again.
_RETRIED = ("write-failed", "local-unreadable")


class Merger:
    """
    :param path: the local config file.
    :param reloader: the L{cri_shim.sync.reloader.ConfigReloader}.
    :param note: called with each outcome: C{(condition, log format or
        None, level, **fields)}.
    :param running: returns whether the sync still runs (nothing is written
        once it stopped).
    :param clock: an C{IReactorTime}.
    :param retry_in: returns the seconds after which a merge that could not
        read or write the file is tried again.
    """

    log = Logger()

    def __init__(self, path, reloader, note, running, clock, retry_in):
        self.path = path
        self._reloader = reloader
        self._note = note
        self._running = running
        self._clock = clock
        self._retry_in = retry_in
        self._retry = None
        self._latest = None
        self._merging = None
        self._dirty = False
        self._own_publish = False
        self._merged = None
        self._rejected = None
        self._idle = []

    def offer(self, settings, document):
        """
        Merge C{document}, the ConfigMap (C{None}: there is none), read with
        C{settings} (the C{configMap:} section in force).
        """
        self._latest = (settings, document)
        self._start()

    def again(self):
        """
        The local file changed (not by this merge): merge the last ConfigMap
        seen into it again.
        """
        if self._latest is not None and not self._own_publish:
            self._start()

    def _retried(self):
        self._retry = None
        if self._running():
            self._start()

    def cancel(self):
        """
        Try nothing again (the sync stops).
        """
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def idle(self):
        """
        :return: a Deferred that fires when no merge is in progress.
        """
        if self._merging is None:
            return succeed(None)
        d = Deferred()
        self._idle.append(d)
        return d

    def _start(self):
        if self._merging is not None:
            self._dirty = True
            return
        self._merging = True
        self._merge_loop()

    @inlineCallbacks
    def _merge_loop(self):
        try:
            self._dirty = True
            while self._dirty and self._running():
                self._dirty = False
                settings, document = self._latest
                try:
                    yield self._merge(settings, document)
                except Skip as skip:
                    self._note(skip.condition, skip.log_format, skip.level, **skip.fields)
                    if skip.condition in _RETRIED and self._retry is None:
                        self._retry = self._clock.callLater(self._retry_in(), self._retried)
        finally:
            self._merging = None
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    @inlineCallbacks
    def _merge(self, settings, document):
        """
        Merge C{document}, the ConfigMap (C{None}: there is none), into the
        local file, and apply the result.

        :raise Skip: (in the Deferred) when nothing is applied, saying why.
        """
        where = "{}/{}".format(settings.namespace, settings.name)
        if document is None:
            raise Skip("not-found", "ConfigMap {where} not found; using the local config "
                        "only", where=where)
        version = document["metadata"].get("resourceVersion")
        data = document.get("data") or {}
        if not isinstance(data, dict) or not isinstance(data.get(settings.key), str):
            raise Skip("no-key:" + str(version),
                        "ConfigMap {where} has no key {key}; using the local config only",
                        where=where, key=settings.key)
        local = yield self._read_local()
        fingerprint = (where, version, hashlib.sha256(local or b"").hexdigest())
        if self._rejected is not None and self._rejected[0] == fingerprint:
            # The same content was refused before: still refused, told once.
            raise self._rejected[1]
        if fingerprint == self._merged:
            self._note("in-sync", "ConfigMap {where} is in sync", where=where)
            return
        text = data[settings.key]
        source = "ConfigMap {}[{}]".format(where, settings.key)
        try:
            cluster_settings, notices = merge.read_cluster_settings(text, source)
            local_document = {} if local is None else parse_yaml(local, self.path)
            if local_document is None:
                # Empty or only comments: most likely caught mid-write by an
                # editor; merging into it would lose the node's own settings.
                raise Skip("local-empty", "{path} holds no settings; not merging the "
                            "ConfigMap into it", level="warn", path=self.path)
            if not isinstance(local_document, dict):
                raise configuration.ConfigError(["{}: not a mapping".format(self.path)])
            merged, merge_notices = merge.merge(local_document, cluster_settings)
            # Compared as YAML, not as objects: aliases stay aliases there,
            # while == would walk every alias of a bomb in the local file.
            new_text = merge.dump(merged)
            if new_text == merge.dump(local_document):
                self._merged = fingerprint
                self._note("in-sync", "ConfigMap {where} is in sync", where=where)
                return
            # The one parse of the new content: the reloader publishes this.
            new, file_notices = schema.load(new_text, source=source)
        except (configuration.ConfigError, RecursionError) as e:
            if isinstance(e, RecursionError):
                problems = ["{}: nested too deeply".format(self.path)]
            else:
                problems = e.problems
            skip = Skip("invalid:{}".format(version),
                         "ConfigMap {where} (resourceVersion {version}) not applied; the last "
                         "good config keeps running:\n  {problems}", level="error",
                         where=where, version=version, problems="\n  ".join(problems))
            self._rejected = (fingerprint, skip)
            raise skip
        if not self._running():
            raise Skip("stopped", "ConfigMap sync stopped; ConfigMap {where} not applied",
                       where=where)
        log_notices(self.log, source, notices + merge_notices)
        self._own_publish = True
        try:
            yield self._reloader.apply(new_text, new, file_notices, "ConfigMap {} resourceVersion "
                                       "{}".format(where, version))
        except OSError as e:
            raise Skip("write-failed", "cannot write {path} ({reason}); it is unchanged and "
                        "the running config stays as it was", level="error", path=self.path,
                        reason=e.strerror or str(e))
        finally:
            self._own_publish = False
        self._merged = (where, version, hashlib.sha256(new_text).hexdigest())
        self.log.info("ConfigMap {where} (resourceVersion {version}) merged into {path}",
                      where=where, version=version, path=self.path)
        self._note("in-sync", None)

    @inlineCallbacks
    def _read_local(self):
        """
        :return: a Deferred firing with the local file's bytes, or C{None}
            when there is none (the merge then makes it).
        """
        try:
            text, _ = yield self._reloader.read()
        except FileNotFoundError:
            returnValue(None)
        except OSError as e:
            raise Skip("local-unreadable", "cannot read {path} ({reason}); not merging",
                        level="error", path=self.path, reason=e.strerror or str(e))
        returnValue(text)

