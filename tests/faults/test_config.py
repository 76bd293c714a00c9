"""
Fault injection on the configuration side.

End to end (the shim as a real C{twistd -n image-cri-shim} process in front
of a real containerd and docker-registry processes, the ConfigMap served
over HTTPS by an in-process L{cri_shim.testing.FakeAPIServer}, as in
L{tests.e2e.test_config}):

- L{ConfigFileWriteFaultTests}: the config file lives on a 64 KiB tmpfs the
  test mounts; the ConfigMap sync's write of it fails because the tmpfs is
  full (ENOSPC) or remounted read-only (EROFS).
- L{LyingAPIServerTests}: the API server answers garbage, HTML, a C{Status}
  with a 200, another ConfigMap, a 40 MB body, or headers and then a body
  that trickles forever.

In each case the file stays intact, the condition is logged once (not once
per poll), the last good config keeps running and the shim keeps serving;
once the fault is gone the next poll does its work.

Unit level (no containerd; a L{ConfigReloader} or L{ConfigMapSync} on a
fake clock):

- L{BadInputAtReloadTests}: a wrong type for every key of every section
  (generated from L{cri_shim.model.config}'s key tables), negative and
  overflowing durations and sizes, duplicate registries, addresses with odd
  schemes, empty and binary files, YAML bombs (aliases, deep nesting).
- L{BadLocalFileSyncTests}: the same hostile documents in the local file
  while the ConfigMap sync merges into it.

The ConfigMap request timeout (C{cri_shim.sync.watch.REQUEST_TIMEOUT}, 10 s)
is shortened to L{SHORT_REQUEST_TIMEOUT} in the shim's process unless
C{ICS_FAULTS_LONG=1}.  Measured figures go to trial's log (C{test.log}) as
C{FAULTS} lines.
"""

import errno
import json
import os
import random
import shutil
import stat
import tempfile
import time
import tracemalloc

import yaml
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, capturedLogs
from twisted.python import log as twisted_log
from twisted.trial import unittest
from twisted.web.server import NOT_DONE_YET

from cri_shim.model import config, schema
from cri_shim.sync.watch import MAX_RESPONSE, REQUEST_TIMEOUT
from cri_shim.sync.reloader import ConfigReloader
from cri_shim.snapshot import SnapshotHolder
from cri_shim.testing import no_jitter
from cri_shim.testing.reactor import FakeReactor
from tests import fault_support
from tests.e2e import test_config as live
from tests.fault_support import MountError, Tmpfs, memory_kib
from tests.sync.test_configmap import CLUSTER, LOCAL, PollerTestMixin

#: The ConfigMap request timeout the shim runs with here (seconds).
SHORT_REQUEST_TIMEOUT = 2.0
#: The reload interval of the API server tests: failed polls back off
#: exponentially from it, so a short one keeps "a few more polls" short.
FAST_RELOAD = "reloadInterval: 200ms\n"
#: The 40 MB body.
HUGE = 40 * 1024 * 1024
#: How much the shim's peak memory may grow while it is sent the 40 MB body
#: (it reads at most MAX_RESPONSE, 3 MiB, of each answer; with the chunks,
#: their join and TLS buffers, its peak grew by 13 MB on a machine with a core
#: kept busy).  A shim reading whole answers would grow by more than HUGE.
HUGE_GROWTH_LIMIT_KIB = HUGE // 1024 // 2
#: How much CPU time one bad input may take to be refused at reload.  CPU
#: time, not wall time: the bound is on the shim's work, which a busy machine
#: must not make look larger (an expanded bomb takes minutes either way).
INPUT_LIMIT = 2.0
#: The levels of the YAML bomb in the local file during a ConfigMap sync,
#: and how long the poll may take: a sync that walks the expanded bomb takes
#: seconds here (30 s at 9 levels), one that does not takes milliseconds.
LOCAL_BOMB_LEVELS = 8
#: (CPU time, like L{INPUT_LIMIT}.)
LOCAL_BOMB_LIMIT = 0.5
#: The most memory a YAML bomb may take to be read.
BOMB_MEMORY_LIMIT = 20 * 1024 * 1024


def _report(test, what, value, unit="s"):
    twisted_log.msg("FAULTS {}: {}: {} {}".format(
        test.id(), what, "{:.3f}".format(value) if isinstance(value, float) else value, unit))


# -- end to end -------------------------------------------------------------------------


class _FaultsLiveCase(live._LiveConfigCase):
    """
    L{live._LiveConfigCase} with the shim's ConfigMap request timeout
    shortened (unless C{ICS_FAULTS_LONG=1}) and images to pull: C{app:N}
    on both registries with different content.
    """

    def setUp(self):
        live._LiveConfigCase.setUp(self)
        self.request_timeout = REQUEST_TIMEOUT
        if not fault_support.long_run():
            self.request_timeout = SHORT_REQUEST_TIMEOUT
            fault_support.patch_shim_module(self.node, "cri_shim.sync.watch", "REQUEST_TIMEOUT",
                                            SHORT_REQUEST_TIMEOUT)
        self._apps = 0

    def push_apps(self, count):
        """
        :return: C{[(name, image on the offline registry, image on the
            second)]}, C{count} fresh names.
        """
        apps = []
        for _ in range(count):
            self._apps += 1
            tag = str(self._apps)
            apps.append(("app:" + tag,
                         self.offline.push_image("library/app", tag,
                                                 content=b"offline app " + tag.encode()),
                         self.second.push_image("library/app", tag,
                                                content=b"second app " + tag.encode())))
        return apps

    def file_bytes(self):
        with open(self.node.config_path, "rb") as f:
            return f.read()

    def report(self, what, value, unit="s"):
        _report(self, what, value, unit)


class ConfigFileWriteFaultTests(_FaultsLiveCase):
    """
    The config file is on a 64 KiB tmpfs: the ConfigMap sync's atomic write
    of it fails when the tmpfs is full or read-only.
    """

    def setUp(self):
        _FaultsLiveCase.setUp(self)
        folder = os.path.join(self.node.sandbox.directory, "etc")
        try:
            self.tmpfs = Tmpfs(folder, size="64k")
        except MountError as e:
            raise unittest.SkipTest("cannot mount a tmpfs here: {}".format(e))

        @inlineCallbacks
        def unmount():
            # The shim first: it must not see its folder change under it.
            try:
                yield deferToThread(self.node.stop_shim)
            finally:
                self.tmpfs.unmount()
                self.assertFalse(fault_support.mounted(folder))
        self.addCleanup(unmount)
        self.node.config_path = os.path.join(folder, "shim.yaml")

    @inlineCallbacks
    def check_write_fault(self, inject, heal, reason):
        """
        Start the shim with no ConfigMap, then inject the fault and publish
        a ConfigMap giving the second registry priority 2000: the write must
        fail, be logged once (with C{reason}) however many polls pass, leave
        the file byte for byte (and no temp file), and pulls must keep using
        the old config; once healed, the next poll writes the file and the
        change applies.
        """
        [(first, offline1, _), (second, offline2, _), (third, _, second3)] = self.push_apps(3)
        text = self.config()
        yield self.start(text)
        yield self.wait_for_log("ConfigMap {} not found".format(live.WHERE))
        self.assertEqual((yield self.pull(first)), offline1.config_digest)

        inject()
        self.set_configmap(self.second_entry(priority=2000))
        injected = time.monotonic()
        failed = "cannot write {} ({})".format(self.node.config_path, reason)
        yield self.wait_for_log(failed, timeout=2 * live.INTERVAL + live.SLACK)
        self.report("fault -> error logged", time.monotonic() - injected)
        yield self.polls(2)
        log = self.node.shim_log()
        self.assertEqual(self.count("cannot write"), 1, log)
        self.assertEqual(self.file_bytes(), text.encode("utf-8"))
        self.assertEqual(schema.load(self.file_bytes())[0].registries[1].priority, 500)
        self.assertEqual(sorted(name for name in os.listdir(self.tmpfs.directory)
                                if name.startswith(".")), [], "a temp file was left")
        self.assertEqual((yield self.pull(second)), offline2.config_digest)

        heal()
        healed = time.monotonic()
        yield self.wait_for_pull(third, second3.config_digest, 2 * live.INTERVAL + live.SLACK,
                                 "the ConfigMap once the file can be written")
        took = time.monotonic() - healed
        self.report("healed -> pull with the ConfigMap's priority", took)
        self.assertEqual(self.second_in_file().get("priority"), 2000)
        self.assertEqual(stat.S_IMODE(os.stat(self.node.config_path).st_mode), 0o600)
        self.assertEqual(self.count("merged into {}".format(self.node.config_path)), 1)
        self.assertEqual(self.count("cannot write"), 1)
        self.assertSameProcess()
        yield self.assertStopsCleanlyWithoutSecrets()

    def test_disk_full(self):
        """
        The tmpfs is filled up (a file grown until ENOSPC): the sync cannot
        write the merged file; once the filler is removed it can.
        """
        filler = []

        def fill():
            filler.append(self.tmpfs.fill())
            # The kernel really refuses a new page now.
            with self.assertRaises(OSError) as caught:
                with open(os.path.join(self.tmpfs.directory, ".probe"), "wb") as f:
                    f.write(b"x" * 4096)
                    f.flush()
            os.unlink(os.path.join(self.tmpfs.directory, ".probe"))
            self.assertEqual(caught.exception.errno, errno.ENOSPC)

        return self.check_write_fault(fill, lambda: os.unlink(filler[0]),
                                      os.strerror(errno.ENOSPC))

    def test_read_only(self):
        """
        The tmpfs is remounted read-only: the sync cannot write the merged
        file (nor create its temp file); once remounted read-write it can.
        """
        return self.check_write_fault(self.tmpfs.read_only, self.tmpfs.read_write,
                                      os.strerror(errno.EROFS))


class LyingAPIServerTests(_FaultsLiveCase):
    """
    The API server answers 200 with things that are not the ConfigMap asked
    for, or a body too large, or one that never ends.
    """

    # The slow body waits for the real 10 s request timeout in the long run.
    timeout = 180 if fault_support.long_run() else 60

    def setUp(self):
        _FaultsLiveCase.setUp(self)
        # FAST_RELOAD is under the file's floor of 1 s.
        fault_support.patch_shim_module(self.node, "cri_shim.model.schema",
                                        "MIN_RELOAD_INTERVAL", 0.2)
        # The shim follows the ConfigMap by a watch: a lie (told to lists
        # only) reaches it when it lists again: after its watch ended (see
        # lie_from_now), a backoff drawn from RECONNECT_SPREAD (shortened
        # here, as the longest wait between attempts while the API server
        # lies) and a 410 for its old resourceVersion.
        fault_support.patch_shim_module(self.node, "cri_shim.sync.configmap",
                                        "RECONNECT_SPREAD", 0.5)
        fault_support.patch_shim_module(self.node, "cri_shim.sync.configmap", "MAX_BACKOFF",
                                        2.0)
        #: When set, C{lie(request)} answers instead of the API server.
        self.lie = None
        self.trickles = {}
        honest = self.apiserver.render_GET

        def render_GET(request):
            if self.lie is None or b"watch" in request.args:
                return honest(request)
            self.apiserver.requests += 1
            return self.lie(request)
        self.apiserver.render_GET = render_GET

        def stop_lying():
            self.lie = None
            for call in list(self.trickles.values()):
                if call.active():
                    call.cancel()
            self.trickles.clear()
        # Runs before the API server and the shim are stopped.
        self.addCleanup(stop_lying)

    def lie_from_now(self, lie):
        """
        Answer every list with C{lie(request)}, and end the watches in
        progress with their history gone (as an API server restarting does),
        so that the shim lists again.
        """
        self.lie = lie
        self.apiserver.expire()
        self.apiserver.end_watches()

    @inlineCallbacks
    def start_in_sync(self):
        """
        Start the shim with the ConfigMap giving the second registry
        priority 2000, and wait until that applies.

        :return: the file's bytes then.
        """
        self.set_configmap(self.second_entry(priority=2000))
        yield self.start(self.config(extra=FAST_RELOAD))
        yield self.wait_for_log("merged into {}".format(self.node.config_path))
        return self.file_bytes()

    @inlineCallbacks
    def check_last_good(self, written, app):
        """
        The file is still C{written} and a fresh name is pulled from the
        second registry (the last good config's priority).
        """
        name, _, on_second = app
        self.assertEqual(self.file_bytes(), written)
        self.assertEqual((yield self.pull(name)), on_second.config_digest)

    @inlineCallbacks
    def test_lies(self):
        """
        One after the other, with the honest answer in between: bytes that
        are not UTF-8, an HTML page, JSON that is not an object, a
        C{Status} (a 500's body) with a 200, and a ConfigMap of another name
        (whose content would move images elsewhere).  Each is logged once,
        with what was wrong, not again at the next polls; the file is left
        alone and the last good config keeps running; the honest answer is
        in sync again afterwards.
        """
        apps = iter(self.push_apps(7))
        written = yield self.start_in_sync()
        yield self.check_last_good(written, next(apps))

        def answer(body, content_type="application/json"):
            def lie(request):
                request.setHeader("content-type", content_type)
                return body
            return lie

        other = {"kind": "ConfigMapList", "apiVersion": "v1",
                 "metadata": {"resourceVersion": "999"},
                 "items": [{"kind": "ConfigMap", "apiVersion": "v1",
                            "metadata": {"name": "other-name", "namespace": live.NAMESPACE,
                                         "resourceVersion": "999"},
                            "data": {live.KEY: self.second_entry(priority=1)}}]}
        lies = [
            ("not UTF-8", answer(b"\xff\xfe\x00garbage{{{" + os.urandom(64)),
             "codec can't decode"),
            ("HTML", answer(b"<html><body><h1>Sign in</h1></body></html>", "text/html"),
             "Expecting value"),
            ("a JSON list", answer(b"[1, 2, 3]"), "'list' object has no attribute 'get'"),
            ("a Status with 200", answer(json.dumps({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                "message": "etcdserver: request timed out"}).encode()), "kind is 'Status'"),
            ("a list of another ConfigMap", answer(json.dumps(other).encode()),
             "it is named 'other-name'"),
        ]
        phrase = "API server sent something that is not ConfigMap {}".format(live.WHERE)
        in_sync = "ConfigMap {} is in sync".format(live.WHERE)
        for number, (label, lie, reason) in enumerate(lies, 1):
            self.lie_from_now(lie)
            lied = time.monotonic()
            yield self.wait_for_log(phrase, count=number)
            self.report("{}: logged after".format(label), time.monotonic() - lied)
            yield self.polls(2)
            log = self.node.shim_log()
            self.assertEqual(self.count(phrase), number, log)
            self.assertIn(reason, [line for line in log.splitlines() if phrase in line][-1])
            yield self.check_last_good(written, next(apps))
            self.lie = None
            yield self.wait_for_log(in_sync, count=number, timeout=10.0)
        self.assertNotIn("merged into", self.node.shim_log().split(
            "merged into {}".format(self.node.config_path), 1)[1])
        self.assertNotIn("Traceback", self.node.shim_log())
        self.assertSameProcess()
        yield self.assertStopsCleanlyWithoutSecrets()

    @inlineCallbacks
    def test_huge_body(self):
        """
        A 40 MB answer: the shim reads at most C{MAX_RESPONSE} (3 MiB) of
        it and gives up; its peak memory grows by far less than 40 MB; the
        condition is logged once; the last good config keeps running.
        """
        apps = iter(self.push_apps(2))
        written = yield self.start_in_sync()
        yield self.check_last_good(written, next(apps))
        pid = self.process.pid
        rss_before, peak_before = memory_kib(pid)
        sent = []
        body = (b'{"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "'
                + live.NAME.encode() + b'", "resourceVersion": "7"}, "data": {"'
                + live.KEY.encode() + b'": "' + b"x" * HUGE + b'"}}')

        def huge(request):
            request.setHeader("content-type", "application/json")
            sent.append(len(body))
            return body
        self.lie_from_now(huge)
        phrase = "response body larger than {} bytes".format(MAX_RESPONSE)
        yield self.wait_for_log(phrase)
        yield self.polls(3)
        rss_after, peak_after = memory_kib(pid)
        self.report("shim RSS before / after (KiB)", "{} / {}".format(rss_before, rss_after), "")
        self.report("shim peak RSS before / after (KiB)",
                    "{} / {}".format(peak_before, peak_after), "")
        self.report("40 MB answers sent", len(sent), "")
        self.assertEqual(self.count(phrase), 1, self.node.shim_log())
        self.assertGreaterEqual(len(sent), 4)
        self.assertLess(peak_after - peak_before, HUGE_GROWTH_LIMIT_KIB)
        yield self.check_last_good(written, next(apps))
        self.assertSameProcess()
        yield self.assertStopsCleanlyWithoutSecrets()

    @inlineCallbacks
    def test_slow_body(self):
        """
        Headers at once, then a body that trickles a byte every 0.3 s and
        never ends: each poll is abandoned after the request timeout (its
        connection closed), logged once; the shim keeps serving with the
        last good config; and once the API server answers again, a new
        change of the ConfigMap applies (the sync is not stuck).
        """
        apps = iter(self.push_apps(2))
        written = yield self.start_in_sync()
        yield self.check_last_good(written, next(apps))
        open_requests = []
        served = []

        def slow(request):
            request.setHeader("content-type", "application/json")
            request.write(b'{"kind": "ConfigMap", "metadata": {"name": "')
            served.append(request)
            open_requests.append(request)

            def closed(_):
                open_requests.remove(request)
                call = self.trickles.pop(id(request), None)
                if call is not None and call.active():
                    call.cancel()
            request.notifyFinish().addBoth(closed)

            def trickle():
                request.write(b" ")
                self.trickles[id(request)] = reactor.callLater(0.3, trickle)
            self.trickles[id(request)] = reactor.callLater(0.3, trickle)
            return NOT_DONE_YET
        self.lie_from_now(slow)
        lied = time.monotonic()
        phrase = "unreachable (no answer within {:g}s)".format(self.request_timeout)
        yield self.wait_for_log(phrase, timeout=self.request_timeout + 3.0)
        self.report("slow body -> logged", time.monotonic() - lied)
        # Two more polls, each waiting for its timeout.
        target = self.apiserver.requests + 2
        yield live.wait_until(lambda: self.apiserver.requests >= target,
                              2 * (self.request_timeout + 2.0) + 5.0, "two more slow polls")
        self.report("slow answers started", len(served), "")
        self.report("slow answers still open", len(open_requests), "")
        self.assertEqual(self.count(phrase), 1, self.node.shim_log())
        # The last poll's request may still be waiting for its timeout.
        self.assertLessEqual(len(open_requests), 1,
                             "abandoned requests keep their connections open")
        yield self.check_last_good(written, next(apps))

        # Honest again, with a change: the offline registry wins again.
        [(name, on_offline, _)] = self.push_apps(1)
        self.lie = None
        self.set_configmap(self.second_entry())
        honest = time.monotonic()
        yield self.wait_for_pull(name, on_offline.config_digest,
                                 self.request_timeout + 8.0, "the ConfigMap after the stall")
        self.report("honest again -> change applied", time.monotonic() - honest)
        self.assertNotIn("Traceback", self.node.shim_log())
        self.assertSameProcess()
        yield self.assertStopsCleanlyWithoutSecrets()


# -- unit level: bad input at reload --------------------------------------------------------

#: What each key of L{config}'s tables holds; every key must be here (a key
#: added to the tables without a kind fails L{test_every_key_has_a_kind}).
TOP_KINDS = {
    "shim": "path", "cri": "path", "address": "address", "auth": "auth", "force": "bool",
    "debug": "bool", "timeout": "duration", "reloadInterval": "duration",
    "offlinePriority": "int", "probeTimeout": "duration", "registries": "list-of-maps",
    "cache": "map", "mirrorOf": "domains", "configMap": "map", "healthCheck": "map",
    "allowUpstream": "bool", "admin": "admin", "adminTokenFile": "path", "events": "bool",
    "names": "names", "stateDir": "path",
    "insecureSkipVerify": "bool", "caFile": "path", "certFile": "path", "keyFile": "path",
}
REGISTRY_KINDS = {
    "address": "address", "auth": "auth", "priority": "int", "mirrorOf": "domains",
    "namespaces": "namespaces", "podSelector": "selector",
    "insecureSkipVerify": "bool", "caFile": "path", "certFile": "path", "keyFile": "path",
}
CACHE_KINDS = {
    "imageCacheSize": "int", "imageCacheTTL": "duration", "negativeCacheTTL": "duration",
    "statsLogInterval": "duration", "disableStats": "bool",
}
HEALTH_KINDS = {
    "interval": "duration", "timeout": "duration", "failureThreshold": "int",
    "successThreshold": "int",
}
CONFIGMAP_KINDS = {"enabled": "bool", "namespace": "name", "name": "name", "key": "name"}

#: Values of the wrong type (or form) for each kind.
WRONG = {
    "bool": ["yes", "true", 1, 0, 1.5, [True], {"a": 1}],
    "int": ["high", "12", 1.5, True, [1], {"a": 1}, float("inf")],
    "duration": [True, 15, 1.5, "soon", "15", "1e3s", "5 parsecs", [1], {"a": 1},
                 float("nan")],
    "path": [[1], {"a": 1}, True, "relative/path", 12],
    "admin": [True, [1], {"a": 1}, 12, "nowhere", "127.0.0.1:99999", ":80"],
    "address": [[1], {"a": 1}, True, 12, "ftp://x.example", "unix:///run/x.sock",
                "file:///etc/passwd", "javascript:alert(1)", "data:text/html,x",
                "http://user:secret-in-url@h.example", "http://h.example:99999", "bad host!"],
    "auth": [12, True, [1], {"username": 1}, {"password": [1]}, {"username": {"a": 1}}],
    "domains": [12, True, {"a": 1}, [1], [[1]], ["bad domain!"]],
    "list-of-maps": ["x", 12, True, {"a": 1}, [1], ["x"]],
    "map": ["x", 12, True, [1]],
    "names": ["sometimes", 12, True, [1], {"a": 1}],
    "namespaces": [12, True, {"a": 1}, [1], [], ["Bad_NS"], [[1]]],
    "selector": ["x", 12, True, [1], {"matchLabels": [1]}, {"matchLabels": {"a": True}},
                 {"matchLabels": {"bad key!": "x"}}, {"matchExpressions": "x"},
                 {"matchExpressions": [{"key": "a", "operator": "Has"}]},
                 {"matchExpressions": [{"key": "a", "operator": "In"}]}],
    "name": [[1], {"a": 1}, True, "Not_Valid!", "x" * 300],
}

#: The base document every bad input is put into.
BASE = {
    "address": "http://sealos.hub:5000",
    "auth": "admin:one",
    "reloadInterval": "10s",
    "force": True,
    "registries": [{"address": "https://mirror.example", "auth": "m:two"}],
}


def _dump(document):
    return yaml.safe_dump(document, sort_keys=False).encode("utf-8")


def _with(section, key, value):
    """
    :return: L{BASE} with C{value} at C{key} of C{section} (C{""} for the
        top level, C{"registries"} for the first entry) and the key path a
        problem about it must start with.
    """
    document = {name: (list(item) if isinstance(item, list) else item)
                for name, item in BASE.items()}
    document["registries"] = [dict(BASE["registries"][0])]
    if section == "":
        document[key] = value
        return document, key
    if section == "registries":
        document["registries"][0][key] = value
        return document, "registries[0].{}".format(key)
    document[section] = {key: value}
    return document, "{}.{}".format(section, key)


def _names(problems, key):
    """
    :return: whether one of C{problems} is about C{key} (or an item of it).
    """
    return any(problem.startswith(key) and problem[len(key):len(key) + 1] in (":", "[", ".")
               for problem in problems)


def billion_laughs(levels=9, under="lol"):
    """
    :return: YAML for the classic bomb: C{levels} levels of ten aliases of
        the level below (10**levels strings when expanded), the last level
        under the key C{under}.
    """
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append("l{0}: &l{0} [{1}]".format(level, ", ".join(["*l{}".format(level - 1)] * 10)))
    lines.append("{}: [{}]".format(under, ", ".join(["*l{}".format(levels - 1)] * 10)))
    return "\n".join(lines) + "\n"


def deep_sequence(depth=10000):
    return "deep: " + "[" * depth + "]" * depth + "\n"


def deep_mapping(depth=10000):
    return "deep: " + "{a: " * depth + "1" + "}" * depth + "\n"


class BadInputAtReloadTests(unittest.SynchronousTestCase):
    """
    Every bad input is refused at reload with one error naming the key (or
    the file), quickly; the last good config keeps running; no exception
    escapes the reloader.
    """

    def setUp(self):
        folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, folder, True)
        self.path = os.path.join(folder, "shim.yaml")
        self.good = _dump(BASE)
        self.write(self.good)
        self.reactor = FakeReactor()
        self.holder = SnapshotHolder(schema.load(self.good)[0], self.reactor.seconds)
        self.reloader = ConfigReloader(self.path, self.holder, self.reactor, self.good,
                                       handle_sighup=False, uniform=no_jitter)
        self.reloader.startService()
        self.addCleanup(self.reloader.stopService)
        self.slowest = (0.0, None)

    def write(self, data):
        with open(self.path, "wb") as f:
            f.write(data)

    def reload(self, data):
        """
        Write C{data} and let the reload timer fire.

        :return: C{(log events, CPU seconds the reload took)}.
        """
        self.write(data)
        with capturedLogs() as events:
            started = time.process_time()
            # The running config's interval (the defaults' after an empty
            # file was wrongly applied).
            self.reactor.advance(self.holder.current.config.reload_interval)
            took = time.process_time() - started
        escaped = [e for e in events if "log_failure" in e]
        self.assertEqual(escaped, [], "an exception escaped the reload")
        if took > self.slowest[0]:
            self.slowest = (took, data[:60])
        self.assertLess(took, INPUT_LIMIT)
        return events, took

    def assertRefused(self, data, key=None, file=False):
        """
        Reloading C{data} logs one error whose problems name C{key} (or the
        file), publishes nothing, and the running config is still the good
        one.
        """
        generation = self.holder.current.generation
        events, took = self.reload(data)
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1, (data[:200], [e.get("log_format") for e in events]))
        problems = errors[0]["problems"]
        if key is not None:
            self.assertTrue(_names(problems.split("\n  "), key),
                            "{!r} does not name {}: {}".format(data[:200], key, problems))
        if file:
            self.assertIn(self.path, problems)
        self.assertEqual(self.holder.current.generation, generation)
        self.assertEqual(self.holder.current.config.offline.credentials.password.reveal(),
                         "one")
        return problems

    def assertStillReloads(self):
        """
        The reloader still applies a good change.
        """
        changed = dict(BASE, auth="admin:after")
        self.reload(_dump(changed))
        self.assertEqual(self.holder.current.config.offline.credentials.password.reveal(),
                         "after")

    def test_every_key_has_a_kind(self):
        """
        The kind tables here cover every key L{cri_shim.model.config} knows.
        """
        self.assertEqual(set(TOP_KINDS), set(schema._TOP_KEYS))
        self.assertEqual(set(REGISTRY_KINDS), set(schema._REGISTRY_KEYS))
        self.assertEqual(set(CACHE_KINDS), set(schema._CACHE_KEYS))
        self.assertEqual(set(HEALTH_KINDS), set(schema._HEALTH_KEYS))
        self.assertEqual(set(CONFIGMAP_KINDS), set(schema._CONFIGMAP_KEYS))

    def test_wrong_types(self):
        """
        For every key of every section, every value of the wrong type is
        refused by C{schema.load} with a problem naming the key, and at
        reload with one error naming it, the good config running on.  No
        problem quotes the password of an address's user information.
        """
        cases = 0
        for section, kinds in (("", TOP_KINDS), ("registries", REGISTRY_KINDS),
                               ("cache", CACHE_KINDS), ("healthCheck", HEALTH_KINDS),
                               ("configMap", CONFIGMAP_KINDS)):
            for key, kind in sorted(kinds.items()):
                for value in WRONG[kind]:
                    document, path = _with(section, key, value)
                    data = _dump(document)
                    with self.assertRaises(config.ConfigError,
                                           msg="{} = {!r} accepted".format(path, value)) as caught:
                        schema.load(data)
                    self.assertTrue(_names(caught.exception.problems, path),
                                    "{} = {!r}: {}".format(path, value,
                                                           caught.exception.problems))
                    problems = self.assertRefused(data, path)
                    self.assertNotIn("secret-in-url", problems)
                    cases += 1
        _report(self, "wrong-type cases refused", cases, "")
        _report(self, "slowest reload", self.slowest[0])
        self.assertStillReloads()

    def test_negative_and_overflowing(self):
        """
        Durations past Go's limit (about 292 years) are refused naming the
        key; negative ones mean the default, as in the Go shim (and as
        C{0}); sizes and thresholds out of range are refused or clamped
        with a notice naming the key; huge but valid values load.
        """
        durations = [(section, key) for section, kinds in (
            ("", TOP_KINDS), ("cache", CACHE_KINDS), ("healthCheck", HEALTH_KINDS))
            for key, kind in kinds.items() if kind == "duration"]
        for section, key in durations:
            for value in ("2562048h", "3000000h", "9" * 30 + "s", "1" + "0" * 400 + "ns"):
                document, path = _with(section, key, value)
                self.assertRefused(_dump(document), path)
            # Negative: the default, as for 0 (Go: <= 0 means the default).
            defaults = schema.load(_dump(_with(section, key, 0)[0]))[0]
            for value in ("-5s", "-1h"):
                loaded = schema.load(_dump(_with(section, key, value)[0]))[0]
                self.assertEqual(loaded, defaults, (key, value))
            # The largest Go accepts loads.
            schema.load(_dump(_with(section, key, "2562047h")[0]))
        for section, key in (("healthCheck", "failureThreshold"),
                             ("healthCheck", "successThreshold")):
            for value in (-1, 0, 101, 10 ** 30):
                document, path = _with(section, key, value)
                self.assertRefused(_dump(document), path)
        for section, key, value, expected, notice in (
                ("", "offlinePriority", -5, 0, "offlinePriority: -5 is below 0"),
                ("", "offlinePriority", 10 ** 30, config.MAX_PRIORITY, "offlinePriority: 1"),
                ("registries", "priority", -1, 0, "registries[0].priority: -1 is below 0"),
                ("registries", "priority", 2 ** 64, config.MAX_PRIORITY,
                 "registries[0].priority: 18446744073709551616 is above"),
                ("cache", "imageCacheSize", -1, 0, "cache.imageCacheSize: -1 is negative")):
            loaded, notices = schema.load(_dump(_with(section, key, value)[0]))
            self.assertTrue(any(n.message.startswith(notice) for n in notices),
                            (key, value, [n.message for n in notices]))
            if key == "imageCacheSize":
                self.assertEqual(loaded.cache.size, expected)
            else:
                self.assertIn(expected, [r.priority for r in loaded.registries])
        # A cache "of any size" loads, and reloads.
        self.reload(_dump(_with("cache", "imageCacheSize", 10 ** 30)[0]))
        self.assertEqual(self.holder.current.config.cache.size, 10 ** 30)

    def test_duplicate_registries(self):
        """
        A registry listed twice, or the offline registry listed again, is
        kept once, with a notice naming the ignored entry.
        """
        document = dict(BASE, registries=[
            {"address": "https://mirror.example", "auth": "m:two"},
            {"address": "https://mirror.example", "auth": "m:three", "priority": 900},
            {"address": "http://sealos.hub:5000"},
            {"address": "https://MIRROR.example/"},
        ])
        loaded, notices = schema.load(_dump(document))
        self.assertEqual([r.name for r in loaded.registries],
                         ["sealos.hub:5000", "mirror.example"])
        messages = [n.message for n in notices]
        for index in (1, 2, 3):
            self.assertTrue(any(m.startswith("registries[{}]: ".format(index)) and
                                "already configured" in m for m in messages), messages)
        self.assertEqual(loaded.registries[1].credentials.password.reveal(), "two")

    def test_odd_schemes(self):
        """
        ftp, unix, file, javascript and data addresses are refused, for the
        offline registry and for a C{registries:} entry, naming the key.
        """
        for address in ("ftp://x.example", "unix:///run/registry.sock", "file:///etc/passwd",
                        "javascript:alert(1)", "data:text/html,<b>x</b>", "gopher://x.example",
                        "HTTP://x.example:5000/../..", "http://[::1"):
            for section in ("", "registries"):
                document, path = _with(section, "address", address)
                problems = self.assertRefused(_dump(document), path)
                self.assertIn("invalid registry address", problems)
        self.assertStillReloads()

    def test_empty_files(self):
        """
        A file with no settings in it (empty, blank, only a comment, only a
        document marker, an explicit null) is refused at reload, naming the
        file: most likely an editor caught mid-write (the example config
        starts with comment lines), and applying it would drop every
        registry.
        """
        applied = []
        for number, data in enumerate((
                b"", b"\n\n", b"   \t\n", b"# image-cri-shim config\n",
                b"# image-cri-shim config\n# registries below\n", b"---\n", b"...\n",
                b"null\n", b"~\n")):
            # A good config first (a new one each time: each empty file is
            # then told anew).
            self.reload(self.good + "# {}\n".format(number).encode())
            generation = self.holder.current.generation
            events, _ = self.reload(data)
            if self.holder.current.generation != generation:
                applied.append(data)
                continue
            errors = [e for e in events if e["log_level"] == LogLevel.error]
            self.assertEqual(len(errors), 1, data)
            self.assertEqual(errors[0]["path"], self.path)
            self.assertEqual(self.holder.current.config.offline.credentials.password.reveal(),
                             "one")
        self.assertEqual(applied, [], "files without settings replaced the running config "
                                      "with the defaults (no registries)")

    def test_binary_files(self):
        """
        Random bytes, NUL bytes (alone and inside a good file), UTF-16 with
        and without a byte order mark, and a good file cut in the middle of
        a UTF-8 sequence are refused naming the file.
        """
        rng = random.Random(1)
        good_text = self.good.decode("utf-8")
        inputs = [
            bytes(rng.randrange(256) for _ in range(4096)),
            b"\0" * 1024,
            self.good[:20] + b"\0" + self.good[20:],
            good_text.encode("utf-16"),
            good_text.encode("utf-16-le"),
            good_text.encode("utf-32"),
            self.good + "# caf\u00e9".encode("utf-8")[:-1],
            b"\x1b[31m" + self.good,
        ]
        for data in inputs:
            self.assertRefused(data, file=True)
        # A UTF-8 byte order mark is fine.
        self.reload(b"\xef\xbb\xbf" + _dump(dict(BASE, auth="admin:bom")))
        self.assertEqual(self.holder.current.config.offline.credentials.password.reveal(),
                         "bom")

    def load_time(self, data):
        started = time.process_time()
        try:
            schema.load(data, source=self.path)
        except config.ConfigError:
            pass
        return time.process_time() - started

    def load_memory(self, data, deep):
        """
        :return: the bytes reading C{data} took at its peak: traced by
            tracemalloc, or for deeply nested documents (whose recursion
            tracemalloc slows a hundredfold) the growth of this process's
            peak resident memory (an upper bound).
        """
        if deep:
            before = fault_support.memory_kib(os.getpid())[1]
            self.load_time(data)
            return (fault_support.memory_kib(os.getpid())[1] - before) * 1024
        tracemalloc.start()
        try:
            self.load_time(data)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def test_yaml_bombs(self):
        """
        A billion laughs (10**9 strings through aliases) under an unknown
        key, under C{registries}, C{mirrorOf} and C{cache}, and 10000 levels
        of nested sequences and mappings: each is read (or refused, naming
        the key or the file) in under L{INPUT_LIMIT} CPU seconds and
        L{BOMB_MEMORY_LIMIT} bytes; PyYAML's C{safe_load} builds aliases as
        shared references, never expanding them.
        """
        good = self.good.decode("utf-8")
        cases = [
            ("unknown key", good + billion_laughs(under="bomb"), None),
            ("registries", good.replace("registries:", "old_registries:") +
             billion_laughs(under="registries"), "registries[0]"),
            ("mirrorOf", good + billion_laughs(under="mirrorOf"), "mirrorOf[0]"),
            ("cache", good + billion_laughs(levels=3, under="x") +
             "cache: {a: *l2, b: *l2, c: *l2}\n", None),
            ("deep sequence", good + deep_sequence(), "file"),
            ("deep mapping", good + deep_mapping(), "file"),
        ]
        for label, text, key in cases:
            data = text.encode("utf-8")
            took = self.load_time(data)
            peak = self.load_memory(data, deep=key == "file")
            _report(self, "{}: load".format(label), took)
            _report(self, "{}: memory".format(label), peak, "bytes")
            self.assertLess(took, INPUT_LIMIT, label)
            self.assertLess(peak, BOMB_MEMORY_LIMIT, label)
            if key is None:
                # Valid: the bomb sits under keys the shim ignores.
                notices = schema.load(data)[1]
                self.assertTrue(any("ignoring unknown key" in notice.message
                                    for notice in notices), label)
                generation = self.holder.current.generation
                self.reload(data)
                self.assertGreater(self.holder.current.generation, generation, label)
                self.reload(self.good)
            elif key == "file":
                self.assertIn("nested too deeply", self.assertRefused(data, file=True))
            else:
                self.assertRefused(data, key)
        _report(self, "slowest reload", self.slowest[0])
        self.assertStillReloads()


# -- unit level: hostile local files while the ConfigMap is merged ------------------------


class BadLocalFileSyncTests(PollerTestMixin, unittest.SynchronousTestCase):
    """
    The ConfigMap sync reads and merges into the local file on every change:
    hostile content there must not hang the reactor, escape as an exception,
    or be merged into.
    """

    def poll_events(self, run):
        with capturedLogs() as events:
            started = time.process_time()
            run()
            took = time.process_time() - started
        self.assertEqual([e for e in events if "log_failure" in e], [],
                         "an exception escaped the ConfigMap sync")
        return events, took

    def test_billion_laughs_in_local_file(self):
        """
        A local file holding a YAML bomb (10**8 strings through aliases)
        under a key the shim ignores (a valid config: the reloader accepts
        it) and a ConfigMap in sync with it: the poll must take well under
        L{LOCAL_BOMB_LIMIT}.  A structural comparison of the merged
        document with the file's (C{merged == local}: the deep copy shares
        nothing with the original, so every alias is walked) takes seconds
        here and ten times longer per level: 30 s for the classic billion
        laughs, unbounded for deeper bombs (any depth fits in the 1 MiB
        file limit), all of it with the reactor blocked.
        """
        local = LOCAL + billion_laughs(levels=LOCAL_BOMB_LEVELS, under="bomb").encode("utf-8")
        with open(self.path, "wb") as f:
            f.write(local)
        schema.load(local)  # valid
        self.api.set_configmap("kube-system", "image-cri-shim", {
            "registries.yaml": "sealos: {address: http://sealos.hub:5000}\n"})
        events, took = self.poll_events(lambda: self.start())
        _report(self, "poll with a 10**{} laughs bomb in the local file".format(
            LOCAL_BOMB_LEVELS), took)
        self.assertLess(took, LOCAL_BOMB_LIMIT)
        self.assertEqual(self.local(), local)

    def test_deep_nesting_in_local_file(self):
        """
        A local file nested 10000 levels deep (refused by the reloader) and a
        ConfigMap to merge: the sync refuses to merge into it with one error
        naming the file, not a traceback on every poll; the file is left
        alone and the running config is the last good one.
        """
        local = LOCAL + deep_sequence().encode("ascii")
        with open(self.path, "wb") as f:
            f.write(local)
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        events, took = self.poll_events(lambda: (self.start(), self.tick(), self.tick()))
        _report(self, "three polls with a deeply nested local file", took)
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1, [e.get("log_format") for e in events])
        self.assertIn(self.path, errors[0].get("problems", ""))
        self.assertEqual(self.local(), local)
        self.assertEqual(self.offline_password(), "local-pw")

    def test_comment_only_local_file(self):
        """
        A local file holding only its header comment (an editor caught
        mid-write: the example config starts with comment lines) is not
        merged into, as an empty one is not: the merge would replace the
        node's own settings with the ConfigMap's alone.
        """
        with open(self.path, "wb") as f:
            f.write(b"# image-cri-shim node config\n")
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        self.poll_events(lambda: self.start())
        self.assertEqual(self.local(), b"# image-cri-shim node config\n")

