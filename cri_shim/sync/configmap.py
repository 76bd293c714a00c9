# -*- test-case-name: tests.sync.test_configmap -*-
"""
ConfigMap sync: poll the cluster-wide settings (default
C{kube-system/image-cri-shim}, key C{registries.yaml}) over treq, merge them
into the local config file (written atomically, mode 0600, only when it
changes), and apply the result through the file reload.

Each condition is logged when it starts, not on every poll: no cluster,
no ConfigMap, no permission, an outage (retried with exponential backoff
from C{reloadInterval} up to L{MAX_BACKOFF}), invalid content (the last good
config keeps running).
"""

import hashlib
import json

import yaml
from twisted.application import service
from twisted.internet.defer import inlineCallbacks, returnValue
from twisted.logger import Logger

from cri_shim.model import config as configuration, merge, schema
from cri_shim.files import write_atomically
from cri_shim.registries.httputil import describe_failure, read_capped
from cri_shim.metrics import Metrics
from cri_shim.sync.reloader import log_notices
from cri_shim.sync.ticker import Ticker

#: The longest wait between polls while the API server is failing.
MAX_BACKOFF = 300.0
#: How long one request to the API server may take.
REQUEST_TIMEOUT = 10.0
#: The most of a response read (a ConfigMap holds at most 1 MiB).
MAX_RESPONSE = 3 * 1024 * 1024


class _Skip(Exception):
    """
    This poll ends here; C{condition} says why (logged when it changes).
    """

    def __init__(self, condition, log_format, level="info", outage=False, **fields):
        Exception.__init__(self, condition)
        self.condition = condition
        self.log_format = log_format
        self.level = level
        self.outage = outage
        self.fields = fields


class ConfigMapPoller(service.Service):
    """
    :param path: the local config file.
    :param holder: the L{cri_shim.snapshot.SnapshotHolder} (settings).
    :param reloader: the L{cri_shim.sync.reloader.ConfigReloader} applying writes.
    :param clock: an C{IReactorTime}.
    :param discover: returns C{(cluster or None, [warnings])}; see
        L{cri_shim.sync.kube.find_cluster}.
    :param http_for: makes a treq-shaped client for a cluster.
    :param write: writes the file (L{write_atomically}; tests pass faults).
    """

    name = "configmap"
    log = Logger()

    def __init__(self, path, holder, reloader, clock, discover, http_for,
                 write=write_atomically, metrics=None):
        self._metrics = metrics or Metrics()
        #: When the ConfigMap was last read successfully (clock seconds).
        self.last_success = None
        self.path = path
        self._holder = holder
        self._reloader = reloader
        self._clock = clock
        self._discover = discover
        self._http_for = http_for
        self._write = write
        self._cluster = None
        self._http = None
        self._condition = None
        self._failures = 0
        self._merged = None
        self._rejected = None
        self._ticker = Ticker(self.poll, clock, "ConfigMap sync")
        holder.subscribe(lambda snapshot: self._ticker.set_interval(self._interval()))

    def startService(self):
        service.Service.startService(self)
        # The first poll starts now but never holds up serving: it runs
        # while the gRPC server already answers from the local file.
        self._ticker.start(self._interval(), now=True)

    def stopService(self):
        service.Service.stopService(self)
        self._ticker.stop()

    def _interval(self):
        base = self._holder.current.config.reload_interval
        if not self._failures:
            return base
        return min(base * 2 ** self._failures, max(MAX_BACKOFF, base))

    @inlineCallbacks
    def poll(self):
        """
        One sync: fetch, merge, write, apply.  Never fails.
        """
        try:
            yield self._sync()
        except _Skip as skip:
            self._failures = self._failures + 1 if skip.outage else 0
            self._note(skip.condition, skip.log_format, skip.level, skip.outage, **skip.fields)
        else:
            self._failures = 0
            self.last_success = self._clock.seconds()
        self._metrics.syncs.inc(self.condition)
        self._ticker.set_interval(self._interval())

    @property
    def condition(self):
        """
        The sync's state in one word (C{in-sync}, C{not-found}, C{denied},
        C{unreachable}, C{invalid}...), for metrics.
        """
        return (self._condition or "starting").split(":")[0]

    def _note(self, condition, log_format, level="info", outage=False, **fields):
        """
        Log if the sync's condition changed to C{condition}.
        """
        if condition == self._condition:
            return
        self._condition = condition
        if outage:
            log_format += "; retrying in {retry:g}s, backing off up to {max_backoff:g}s"
            fields.update(retry=self._interval(), max_backoff=MAX_BACKOFF)
        getattr(self.log, level)(log_format, **fields)

    @inlineCallbacks
    def _sync(self):
        settings = self._holder.current.config.configmap
        where = "{}/{}".format(settings.namespace, settings.name)
        if not settings.enabled:
            raise _Skip("disabled", "ConfigMap sync is off (configMap.enabled: false)")
        cluster = self._find_cluster()
        document = yield self._fetch(cluster, settings, where)
        version = document["metadata"].get("resourceVersion")
        data = document.get("data") or {}
        if not isinstance(data, dict) or not isinstance(data.get(settings.key), str):
            raise _Skip("no-key:" + str(version),
                        "ConfigMap {where} has no key {key}; using the local config only",
                        where=where, key=settings.key)
        local = self._read_local()
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
            local_document = {} if local is None else yaml.safe_load(local)
            if local_document is None:
                # Empty or only comments: most likely caught mid-write by an
                # editor; merging into it would lose the node's own settings.
                raise _Skip("local-empty", "{path} holds no settings; not merging the "
                            "ConfigMap into it", level="warn", path=self.path)
            if not isinstance(local_document, dict):
                raise configuration.ConfigError(["{}: not a mapping".format(self.path)])
            merged = merge.merge(local_document, cluster_settings)
            # Compared as YAML, not as objects: aliases stay aliases there,
            # while == would walk every alias of a bomb in the local file.
            new_text = merge.dump(merged)
            if new_text == merge.dump(local_document):
                self._merged = fingerprint
                self._note("in-sync", "ConfigMap {where} is in sync", where=where)
                return
            schema.load(new_text, source=source)
        except (configuration.ConfigError, yaml.YAMLError, RecursionError) as e:
            if isinstance(e, RecursionError):
                problems = ["{}: nested too deeply".format(self.path)]
            else:
                problems = getattr(e, "problems", None) or ["{}: invalid YAML".format(self.path)]
            skip = _Skip("invalid:{}".format(version),
                         "ConfigMap {where} (resourceVersion {version}) not applied; the last "
                         "good config keeps running:\n  {problems}", level="error",
                         where=where, version=version, problems="\n  ".join(problems))
            self._rejected = (fingerprint, skip)
            raise skip
        log_notices(self.log, source, notices)
        try:
            self._write(self.path, new_text, mode=0o600)
        except OSError as e:
            raise _Skip("write-failed", "cannot write {path} ({reason}); it is unchanged and "
                        "the running config stays as it was", level="error", path=self.path,
                        reason=e.strerror or str(e))
        self._merged = (where, version, hashlib.sha256(new_text).hexdigest())
        self.log.info("ConfigMap {where} (resourceVersion {version}) merged into {path}",
                      where=where, version=version, path=self.path)
        self._condition = "in-sync"
        self._reloader.reload("ConfigMap {} resourceVersion {}".format(where, version))

    def _find_cluster(self):
        if self._cluster is None:
            cluster, warnings = self._discover()
            if cluster is None:
                raise _Skip("no-cluster", "no Kubernetes API server found ({warnings}); using "
                            "the local config only", warnings="; ".join(warnings) or
                            "no in-cluster service account or kubeconfig")
            for warning in warnings:
                self.log.warn("ConfigMap sync: {warning}", warning=warning)
            self.log.info("ConfigMap sync uses {server} as {identity} (from {source})",
                          server=cluster.server, identity=cluster.identity,
                          source=cluster.source)
            self._cluster = cluster
            self._http = self._http_for(cluster)
        return self._cluster

    @inlineCallbacks
    def _fetch(self, cluster, settings, where):
        url = "{}/api/v1/namespaces/{}/configmaps/{}".format(
            cluster.server, settings.namespace, settings.name)
        try:
            headers = cluster.headers()
            headers["Accept"] = ["application/json"]
            d = self._http.get(url, headers=headers, allow_redirects=False)
            d.addCallback(lambda response: read_capped(response, MAX_RESPONSE).addCallback(
                lambda body: (response, body)))
            # The body too: an answer whose body stalls must not stop the
            # sync for good.
            d.addTimeout(REQUEST_TIMEOUT, self._clock)
            response, body = yield d
        except _Skip:
            raise
        except Exception as e:
            raise _Skip("unreachable", "API server {server} unreachable ({reason})",
                        level="warn", outage=True, server=cluster.server, reason=describe_failure(e, REQUEST_TIMEOUT))
        code = response.code
        detail = _status_message(body)
        if code == 404:
            raise _Skip("not-found", "ConfigMap {where} not found ({detail}); using the "
                        "local config only", where=where, detail=detail)
        if code in (401, 403):
            raise _Skip(
                "denied:{}".format(code),
                "ConfigMap sync: {identity} (from {source}) may not get configmap {where}: "
                "{code} {detail}. Grant it 'get' on that ConfigMap, or set "
                "configMap.enabled: false", level="error", identity=cluster.identity,
                source=cluster.source, where=where, code=code, detail=detail)
        if code != 200:
            raise _Skip("status:{}".format(code), "API server answered {code} for "
                        "ConfigMap {where}: {detail}", level="warn", outage=True, code=code,
                        where=where, detail=detail)
        try:
            document = json.loads(body.decode("utf-8"))
            if document.get("kind", "ConfigMap") != "ConfigMap":
                raise ValueError("kind is {!r}".format(document.get("kind")))
            metadata = document.get("metadata")
            if not isinstance(metadata, dict):
                raise ValueError("no metadata")
            if metadata.get("name", settings.name) != settings.name:
                raise ValueError("it is named {!r}".format(metadata.get("name")))
        except (ValueError, AttributeError) as e:
            raise _Skip("garbage", "API server sent something that is not ConfigMap "
                        "{where} ({reason}); the last good config keeps running",
                        level="warn", outage=True, where=where, reason=str(e)[:200])
        returnValue(document)

    def _read_local(self):
        """
        :return: the local file's bytes, or C{None} when there is none (the
            merge then makes it).
        """
        try:
            with open(self.path, "rb") as f:
                return f.read(configuration.MAX_CONFIG_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _Skip("local-unreadable", "cannot read {path} ({reason}); not merging",
                        level="error", path=self.path, reason=e.strerror or str(e))


def _status_message(body):
    """
    :return: the C{message} of a Kubernetes C{Status} body, else a short
        excerpt.
    """
    try:
        message = json.loads(body.decode("utf-8")).get("message")
    except (ValueError, AttributeError, UnicodeDecodeError):
        message = None
    if not isinstance(message, str):
        message = body[:120].decode("utf-8", "replace")
    return " ".join(message.split())[:300] or "(no message)"
