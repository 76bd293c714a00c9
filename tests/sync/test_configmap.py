"""
Tests for L{cri_shim.sync.configmap}: the ConfigMap sync against a fake API
server that follows the real API's contract (L{cri_shim.testing.FakeAPIServer}
over StubTreq), on a fake clock, writing a real file.
"""

import collections
import errno
import os
import random
import shutil
import stat
import tempfile

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, schema
from cri_shim.files import write_atomically
from cri_shim.sync.configfile import read_config
from cri_shim.sync.configmap import (
    MAX_BACKOFF,
    RECONNECT_SPREAD,
    WATCH_SECONDS,
    ConfigMapSync,
)
from cri_shim.sync.reloader import ConfigReloader
from cri_shim.snapshot import SnapshotHolder
from cri_shim.testing.reactor import FakeReactor
from cri_shim.testing import FakeAPIServer, Sequence, no_jitter

LOCAL = b"""# node config
shim: /run/shim.sock
address: http://sealos.hub:5000
auth: admin:local-pw
reloadInterval: 10s
sync: legacy-key
"""

CLUSTER = """
sealos:
  address: http://sealos.hub:5000
  auth: {username: admin, password: "cluster:pw"}
registries:
  - address: https://mirror.example
    auth: {username: m, password: m-pw}
    priority: 700
"""


class FakeCluster:
    server = "https://10.96.0.1:443"
    source = "in-cluster service account"
    identity = "service account kube-system/image-cri-shim"

    def __init__(self, token):
        self.token = token

    def headers(self):
        return {"Authorization": ["Bearer " + self.token]}


class _SilentHTTP:
    def get(self, url, **kwargs):
        return Deferred()


class PollerTestMixin:
    def setUp(self):
        folder = tempfile.mkdtemp(prefix="ics-", dir="/tmp")
        self.addCleanup(shutil.rmtree, folder, True)
        self.folder = folder
        self.path = os.path.join(folder, "image-cri-shim.yaml")
        with open(self.path, "wb") as f:
            f.write(LOCAL)
        self.clock = FakeReactor()
        self.holder = SnapshotHolder(schema.load(LOCAL)[0], self.clock.seconds)
        self.api = FakeAPIServer(clock=self.clock)
        self.http = StubTreq(self.api)
        self.cluster = FakeCluster(self.api.token)
        self.discovered = 0
        self.uniform = no_jitter

    def discover(self):
        self.discovered += 1
        return self.cluster, []

    def start(self, http=None, write=write_atomically):
        self.reloader = ConfigReloader(self.path, self.holder, self.clock, LOCAL,
                                       handle_sighup=False, write=write, uniform=no_jitter)
        self.poller = ConfigMapSync(self.path, self.holder, self.reloader, self.clock,
                                    self.discover, lambda cluster: http or self.http,
                                    uniform=self.uniform)
        self.poller.startService()
        self.addCleanup(self.poller.stopService)
        self.http.flush()

    def tick(self, seconds=10):
        # What the API server sent meanwhile arrives before time passes, as
        # it would over a real connection.
        self.http.flush()
        self.clock.advance(seconds)
        # A request made while the answers to others are delivered (a
        # renewed watch) is delivered by the next flush.
        for _ in range(3):
            self.http.flush()

    def local(self):
        with open(self.path, "rb") as f:
            return f.read()

    def offline_password(self):
        return self.holder.current.config.offline.credentials.password.reveal()


class SyncTests(PollerTestMixin, SynchronousTestCase):
    def test_merged_written_applied(self):
        """
        The ConfigMap is merged into the file (atomically, mode 0600,
        unknown keys kept) and applied at once, without waiting for the
        file reload's own tick.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        self.start()
        self.assertEqual(self.offline_password(), "cluster:pw")
        self.assertEqual([(r.name, r.priority) for r in self.holder.current.config.registries],
                         [("sealos.hub:5000", 1000), ("mirror.example", 700)])
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        text = self.local()
        self.assertIn(b"sync: legacy-key", text)
        self.assertEqual(sorted(os.listdir(self.folder)), ["image-cri-shim.yaml"])

    def test_first_poll_does_not_block(self):
        """
        Starting the poller returns at once even when the API server never
        answers; the running config is the local file's.
        """
        self.start(http=_SilentHTTP())
        self.assertEqual(self.offline_password(), "local-pw")

    def test_change_followed(self):
        """
        A changed ConfigMap is applied at the next poll.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        self.start()
        self.api.set_configmap("kube-system", "image-cri-shim", {
            "registries.yaml": CLUSTER.replace("cluster:pw", "rotated")})
        self.tick()
        self.assertEqual(self.offline_password(), "rotated")

    def test_unchanged_not_rewritten(self):
        """
        An unchanged ConfigMap (same resourceVersion) and file are not merged
        or written again.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        self.start()
        before = os.stat(self.path)
        published = self.holder.current.generation
        self.tick()
        self.tick()
        after = os.stat(self.path)
        self.assertEqual((before.st_ino, before.st_mtime_ns), (after.st_ino, after.st_mtime_ns))
        self.assertEqual(self.holder.current.generation, published)

    def test_hand_edit_of_managed_key_merged_again(self):
        """
        A hand edit of a key the ConfigMap sets, once the file reload
        publishes it, is merged over with the last ConfigMap seen (the
        ConfigMap is the source of truth for what it sets), without asking
        the API server again.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        self.start()
        self.reloader.startService()
        self.addCleanup(self.reloader.stopService)
        requests = self.api.requests
        with open(self.path, "ab") as f:
            f.write(b"auth: admin:hand-edit\n")
        with capturedLogs() as events:
            self.tick()
        self.assertEqual([e["reason"] for e in events if "reloaded" in e["log_format"]],
                         ["timer", "ConfigMap kube-system/image-cri-shim resourceVersion 101"])
        self.assertEqual(self.offline_password(), "cluster:pw")
        self.assertNotIn(b"hand-edit", self.local())
        self.assertEqual(self.api.requests, requests)

    def test_no_change_keeps_file_bytes(self):
        """
        A ConfigMap that changes nothing leaves the file byte for byte.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {
            "registries.yaml": "sealos: {address: http://sealos.hub:5000}\n"})
        self.start()
        self.assertEqual(self.local(), LOCAL)

    def test_settings_from_config(self):
        """
        Namespace, name and key come from C{configMap:}.
        """
        local = LOCAL + b"configMap: {namespace: ops, name: shim, key: cfg.yaml}\n"
        with open(self.path, "wb") as f:
            f.write(local)
        self.holder.publish(schema.load(local)[0])
        self.api.set_configmap("ops", "shim", {"cfg.yaml": CLUSTER})
        self.start()
        self.assertEqual(self.offline_password(), "cluster:pw")

    def test_disabled(self):
        """
        C{configMap.enabled: false} asks nothing.
        """
        local = LOCAL + b"configMap: {enabled: false}\n"
        self.holder.publish(schema.load(local)[0])
        self.start()
        self.tick()
        self.assertEqual((self.api.requests, self.discovered), (0, 0))


class FailureTests(PollerTestMixin, SynchronousTestCase):
    def events(self, run, level=None):
        with capturedLogs() as events:
            run()
        return [e for e in events if level is None or e["log_level"] == level]

    def test_not_found(self):
        """
        No ConfigMap: the file stays byte for byte, one info line.
        """
        events = self.events(lambda: (self.start(), self.tick(), self.tick()))
        self.assertEqual(self.local(), LOCAL)
        notes = [e for e in events if "not found" in e["log_format"]]
        self.assertEqual(len(notes), 1)
        self.assertEqual(notes[0]["log_level"], LogLevel.info)

    def test_no_cluster(self):
        """
        No cluster: one info line, local-only mode, discovery retried
        quietly (a node may join a cluster later).
        """
        self.cluster = None
        events = self.events(lambda: (self.start(), self.tick(), self.tick()))
        self.assertEqual([e["log_level"] for e in events], [LogLevel.info])
        self.assertEqual(self.discovered, 3)

    def test_forbidden(self):
        """
        403: one error naming the identity and the ConfigMap, with the API
        server's own words.
        """
        self.api.forbidden = True
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        events = self.events(lambda: (self.start(), self.tick(), self.tick()),
                             LogLevel.error)
        [event] = events
        self.assertEqual(event["identity"], "service account kube-system/image-cri-shim")
        self.assertEqual(event["where"], "kube-system/image-cri-shim")
        self.assertIn("system:node:worker-1", event["detail"])
        self.assertEqual(self.offline_password(), "local-pw")

    def test_unauthorized(self):
        """
        401 (a wrong or expired token) is reported the same way.
        """
        self.cluster = FakeCluster("stale-token")
        events = self.events(lambda: (self.start(), self.tick()), LogLevel.error)
        self.assertEqual([e["code"] for e in events], [401])
        self.assertNotIn("stale-token", repr(events))

    def test_outage_backoff(self):
        """
        5xx: retried with exponential backoff, jittered in full (the n-th
        retry is drawn from [0, RECONNECT_SPREAD * 2 ** (n - 1)), capped at
        MAX_BACKOFF), logged once per outage; back to watching when it
        recovers, and then asking nothing more.
        """
        self.api.status = 503
        events = self.events(lambda: self.start(), LogLevel.warn)
        self.assertEqual(len(events), 1)
        requests = [self.api.requests]
        # no_jitter draws the middle of each window.
        for wait in (15, 30, 60, 120, MAX_BACKOFF / 2, MAX_BACKOFF / 2):
            self.tick(wait - 0.5)
            self.assertEqual(self.api.requests, requests[-1])
            self.tick(0.5)
            requests.append(self.api.requests)
        self.assertEqual(requests, [1, 2, 3, 4, 5, 6, 7])
        self.api.status = None
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        self.tick(MAX_BACKOFF / 2)
        self.assertEqual(self.offline_password(), "cluster:pw")
        self.assertEqual(self.api.counts, {"get": 0, "list": 8, "watch": 1})
        self.tick(10)
        self.assertEqual(self.api.requests, 9)

    def test_backoff_bounds(self):
        """
        The drawn waits span their whole window: from at once (the first
        retry) to just under the window, which doubles with each failure
        in a row from RECONNECT_SPREAD up to MAX_BACKOFF.
        """
        self.api.status = 503
        self.uniform = Sequence(0.0, 0.999)
        self.start()
        self.tick(0)
        self.assertEqual(self.api.requests, 2)
        for n in range(1, 6):
            wait = 0.999 * min(RECONNECT_SPREAD * 2 ** n, MAX_BACKOFF)
            self.tick(wait - 0.01)
            self.assertEqual(self.api.requests, n + 1)
            self.tick(0.01)
            self.assertEqual(self.api.requests, n + 2)

    def test_bug_retried(self):
        """
        An unexpected exception in the sync is logged with its traceback and
        retried after a backoff; the sync goes on.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        found = self.discover
        broken = [RuntimeError("discovery bug")]

        def discover():
            if broken:
                raise broken.pop()
            return found()
        self.discover = discover
        self.start()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.poller.condition, "failed")
        self.tick(RECONNECT_SPREAD / 2)
        self.assertEqual(self.offline_password(), "cluster:pw")

    def test_timeout(self):
        """
        A request that never answers is abandoned and counts as an outage.
        """
        self.start(http=_SilentHTTP())
        events = self.events(lambda: self.tick(10), LogLevel.warn)
        self.assertEqual(events[0]["reason"], "no answer within 10s")

    def test_invalid_content_keeps_last_good(self):
        """
        A ConfigMap that would make the config invalid is not written or
        applied; one error names the key; a fixed one applies.
        """
        bad = CLUSTER.replace("priority: 700", "priority: high")
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": bad})
        events = self.events(lambda: (self.start(), self.tick(), self.tick()), LogLevel.error)
        self.assertEqual(len(events), 1)
        self.assertIn("registries[0].priority", events[0]["problems"])
        self.assertEqual(self.local(), LOCAL)
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        self.tick()
        self.assertEqual(self.offline_password(), "cluster:pw")

    def test_garbage(self):
        """
        An answer that is not a ConfigMap keeps the last good config.
        """
        self.api.body = b"<html>proxy error</html>"
        events = self.events(lambda: self.start(), LogLevel.warn)
        self.assertIn("not ConfigMap", events[0]["log_format"])
        self.assertEqual(self.local(), LOCAL)

    def test_wrong_object(self):
        """
        A ConfigMap of another name (an API server that lies) is refused.
        """
        self.api.body = (b'{"kind": "ConfigMap", "metadata": {"name": "other"}, '
                         b'"data": {"registries.yaml": "sealos: {address: http://evil.example}"}}')
        self.start()
        self.assertEqual(self.local(), LOCAL)

    def test_missing_key(self):
        """
        A ConfigMap without the key changes nothing.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {"other.yaml": CLUSTER})
        self.start()
        self.assertEqual(self.local(), LOCAL)

    def test_unwritable(self):
        """
        When the file cannot be written (disk full), it stays intact, the
        error is logged once, the running config is unchanged, and the
        write is retried at the next poll.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        attempts = []

        def full(path, data, mode):
            attempts.append(path)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        events = self.events(lambda: (self.start(write=full), self.tick()), LogLevel.error)
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["reason"], "No space left on device")
        self.assertEqual(attempts, [self.path, self.path])
        self.assertEqual(self.local(), LOCAL)
        self.assertEqual(self.offline_password(), "local-pw")

    def test_rejected_stays_rejected(self):
        """
        A refused ConfigMap is never reported in sync afterwards; its error
        is told once.
        """
        bad = CLUSTER.replace("priority: 700", "priority: high")
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": bad})
        events = self.events(lambda: (self.start(), self.tick(), self.tick()))
        self.assertFalse([e for e in events if "in sync" in e["log_format"]])
        self.assertEqual(self.poller.condition, "invalid")

    def test_empty_local_file_not_merged(self):
        """
        An empty local file (caught mid-write) is not merged into.
        """
        with open(self.path, "wb"):
            pass
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        self.start()
        self.assertEqual(self.local(), b"")

    def test_local_file_too_large(self):
        """
        A local file over the size limit is not merged into (a merge of its
        first megabyte would drop the rest): one error says it is too
        large, as the reloader and the start say it; the file stays.
        """
        local = LOCAL + b"# " + b"x" * config.MAX_CONFIG_BYTES + b"\nforce: true\n"
        with open(self.path, "wb") as f:
            f.write(local)
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        events = self.events(lambda: (self.start(), self.tick()), LogLevel.error)
        self.assertEqual([e["problems"] for e in events], ["{}: larger than {} bytes".format(
            self.path, config.MAX_CONFIG_BYTES)])
        self.assertEqual(self.local(), local)
        self.assertEqual(self.offline_password(), "local-pw")



class MergedButInvalidTests(PollerTestMixin, SynchronousTestCase):
    def test_never_written(self):
        """
        A ConfigMap whose every value has the right type (so the merge takes
        it) but which makes the config invalid (a registry address that is
        not one) is never written: the file stays byte for byte, the
        running config is unchanged, one error names the key.
        """
        bad = CLUSTER.replace("https://mirror.example", "https://mirror example/")
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": bad})
        generation = self.holder.current.generation
        with capturedLogs() as events:
            self.start()
            self.tick()
        [error] = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertIn("registries[0].address", error["problems"])
        self.assertEqual(self.local(), LOCAL)
        self.assertEqual(self.holder.current.generation, generation)
        self.assertEqual(self.offline_password(), "local-pw")
        self.assertNotIn(write_atomically, self.clock.pool.calls)


class FileWorkTests(PollerTestMixin, SynchronousTestCase):
    """
    The local file is read and written on the thread pool; the merged
    content is parsed once and written once; stopping waits for the poll in
    progress, which writes nothing once stopped.
    """

    def test_parsed_once_written_once(self):
        """
        A change is read, written and published; the file is not read back,
        and the reloader's next tick finds nothing new.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        self.start()
        self.assertEqual(self.clock.pool.calls, [read_config, write_atomically])
        generation = self.holder.current.generation
        self.reloader.startService()
        self.addCleanup(self.reloader.stopService)
        with capturedLogs() as events:
            self.clock.advance(10)
        self.assertEqual(self.holder.current.generation, generation)
        self.assertFalse([e for e in events if "reloaded" in e["log_format"]])

    def test_stop_during_read_writes_nothing(self):
        """
        Stopped while the local file is being read: the stop waits for the
        poll, which then writes nothing.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        self.clock.pool.hold = True
        self.start()
        self.assertEqual(self.clock.pool.calls, [read_config])
        stopped = self.poller.stopService()
        self.assertNoResult(stopped)
        self.clock.pool.deliver()
        self.successResultOf(stopped)
        self.assertEqual(self.clock.pool.calls, [read_config])
        self.assertEqual(self.local(), LOCAL)
        self.assertEqual(self.offline_password(), "local-pw")

    def test_stop_waits_for_write(self):
        """
        Stopped while the merged file is being written: the stop fires only
        once the write is done and applied.
        """
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
        self.clock.pool.hold = True
        self.start()
        # The read's result: the write starts, and is in progress.
        self.clock.pool.deliver()
        self.assertEqual(self.clock.pool.calls, [read_config, write_atomically])
        stopped = self.poller.stopService()
        self.assertNoResult(stopped)
        self.clock.pool.deliver()
        self.successResultOf(stopped)
        self.assertEqual(self.offline_password(), "cluster:pw")

    def test_stop_abandons_request(self):
        """
        Stopped while the API server has not answered: the request is
        abandoned and the stop fires at once, with no outage reported.
        """
        with capturedLogs() as events:
            self.start(http=_SilentHTTP())
            self.successResultOf(self.poller.stopService())
        self.assertFalse([e for e in events if e["log_level"] >= LogLevel.warn])
        self.assertEqual(self.clock.pool.calls, [])


class WatchTests(PollerTestMixin, SynchronousTestCase):
    """
    The ConfigMap followed by list and watch: changes at once, one request
    per watch renewal at steady state, 410 lists again, a broken watch is
    resumed after a jittered backoff, 403 on watch falls back to polling,
    SIGHUP lists again at once.
    """

    def setUp(self):
        PollerTestMixin.setUp(self)
        self.api.record = True
        # reloadInterval: 1h: nothing below may come from a timer.
        local = LOCAL.replace(b"reloadInterval: 10s", b"reloadInterval: 1h")
        with open(self.path, "wb") as f:
            f.write(local)
        self.holder.publish(schema.load(local)[0])
        self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})

    def change(self, password):
        self.api.set_configmap("kube-system", "image-cri-shim", {
            "registries.yaml": CLUSTER.replace("cluster:pw", password)})

    def kinds(self):
        return [kind for _, kind, _ in self.api.log]

    def test_list_then_watch(self):
        """
        The collection is listed with a field selector on the name, then
        watched from the list's resourceVersion, with bookmarks and a
        timeoutSeconds drawn from WATCH_SECONDS.
        """
        self.uniform = Sequence(0.0)
        self.start()
        (_, first, listed), (_, second, watched) = self.api.log
        self.assertEqual((first, listed), ("list", {"fieldSelector":
                                                    "metadata.name=image-cri-shim"}))
        self.assertEqual((second, watched), ("watch", {
            "fieldSelector": "metadata.name=image-cri-shim", "watch": "1",
            "allowWatchBookmarks": "true", "resourceVersion": "101",
            "timeoutSeconds": str(int(WATCH_SECONDS[0]))}))

    def test_change_applied_at_once(self):
        """
        A change reaches the file and the running config as soon as the API
        server has it, whatever reloadInterval says, with no new request.
        """
        self.start()
        self.change("rotated")
        self.http.flush()
        self.assertEqual(self.offline_password(), "rotated")
        self.assertIn(b"rotated", self.local())
        self.assertEqual(self.kinds(), ["list", "watch"])

    def test_steady_state(self):
        """
        Over a day with no change a node sends one request per watch renewal:
        no more than one per WATCH_SECONDS[0]; the last config stays.
        """
        self.uniform = Sequence(0.0, 0.999)
        self.start()
        for _ in range(24 * 60):
            self.tick(60)
        self.assertEqual(self.kinds()[:2], ["list", "watch"])
        self.assertEqual(set(self.kinds()[1:]), {"watch"})
        renewals = len(self.kinds()) - 1
        longest = WATCH_SECONDS[0] + 0.999 * (WATCH_SECONDS[1] - WATCH_SECONDS[0])
        self.assertEqual(renewals, 2 + int((24 * 3600 - WATCH_SECONDS[0]) // longest))
        self.assertLessEqual(renewals, 24 * 3600 / WATCH_SECONDS[0])
        self.assertEqual(self.offline_password(), "cluster:pw")

    def test_bookmarks_keep_the_watch_resumable(self):
        """
        Bookmarks move the resourceVersion on while other objects change:
        after the history is compacted, the renewal resumes from the
        bookmark's version, with no list.
        """
        self.start()
        self.api.set_configmap("kube-system", "other", {"x": "y"})
        self.tick(self.api.bookmark_interval)
        self.api.compact()
        for _ in range(5):
            self.tick(60)
        self.assertEqual(self.kinds(), ["list", "watch", "watch"])
        self.assertEqual(self.api.log[-1][2]["resourceVersion"], "102")

    def test_gone_lists_again(self):
        """
        410 Gone, as an ERROR event or as an HTTP status, lists again at
        once and watches from the new resourceVersion; a change made
        meanwhile is applied.
        """
        for as_status in (False, True):
            self.api.gone_as_status = as_status
            self.start()
            self.api.drop_watches()
            self.http.flush()
            self.change("while-away-{}".format(as_status))
            self.api.compact()
            self.tick(15)
            self.assertEqual(self.kinds()[-3:], ["watch", "list", "watch"])
            self.assertEqual(self.offline_password(), "while-away-{}".format(as_status))
            self.poller.stopService()

    def test_restored_store_lists_again(self):
        """
        After an etcd restore the API server refuses the watch's version as
        too large (504, as the HTTP status or as an ERROR event): the sync
        logs it once, lists again at once (not from the old version) and
        watches from the new one; a change made then is applied.
        """
        for as_event in (False, True):
            self.api.too_large_as_event = as_event
            self.api.set_configmap("kube-system", "image-cri-shim", {"registries.yaml": CLUSTER})
            self.start()
            self.change("before-restore")
            self.change("before-restore-2")
            self.http.flush()
            restored = int(self.api.version) - 2
            self.api.restore(restored)
            self.api.log[:] = []
            with capturedLogs() as events:
                self.api.drop_watches()
                self.tick(RECONNECT_SPREAD)
            self.assertEqual(self.kinds(), ["watch", "list", "watch"])
            self.assertEqual([query.get("resourceVersion") for _, _, query in self.api.log],
                             [str(restored + 2), None, str(restored)])
            [info] = [e for e in events if "cannot watch from" in e["log_format"]]
            self.assertEqual((info["version"], info["code"]), (str(restored + 2), 504))
            self.assertIn("Too large resource version", info["detail"])
            self.change("after-restore-{}".format(as_event))
            self.http.flush()
            self.assertEqual(self.offline_password(), "after-restore-{}".format(as_event))
            self.poller.stopService()

    def test_unusable_again_backed_off(self):
        """
        An API server that cannot serve the version it has just listed
        either (its watch cache behind) is listed again at once only the
        first time, then after the jittered backoff, doubling; an event
        ends the streak.
        """
        honest = self.api.render_GET

        def too_large(request):
            if b"watch" not in request.args or not self.lagging:
                return honest(request)
            self.api.log.append((self.clock.seconds(), "watch", {}))
            request.setResponseCode(504)
            return (b'{"kind": "Status", "code": 504, "reason": "Timeout", "message": '
                    b'"Timeout: Too large resource version: 9, current: 7"}')
        self.lagging = True
        self.api.render_GET = too_large
        with capturedLogs() as events:
            self.start()
            self.assertEqual(self.kinds(), ["list", "watch", "list", "watch"])
            self.tick(RECONNECT_SPREAD / 2 - 1)
            self.assertEqual(len(self.kinds()), 4)
            self.tick(1)
            self.assertEqual(self.kinds()[4:], ["list", "watch"])
            self.tick(RECONNECT_SPREAD - 1)
            self.assertEqual(len(self.kinds()), 6)
            self.tick(1)
            self.assertEqual(self.kinds()[6:], ["list", "watch"])
            self.lagging = False
            self.tick(2 * RECONNECT_SPREAD)
            self.assertEqual(self.kinds()[8:], ["list", "watch"])
            self.change("caught-up")
            self.http.flush()
            self.api.end_watches()
            self.lagging = True
            self.tick(RECONNECT_SPREAD / 2)
        self.assertEqual(self.offline_password(), "caught-up")
        # Unusable after an event: listed again at once, and only once.
        self.assertEqual(self.kinds()[10:], ["watch", "list", "watch"])
        self.assertEqual(len([e for e in events if "cannot watch from" in e["log_format"]]), 2)

    def test_dropped_watch_resumed_after_backoff(self):
        """
        A broken watch is resumed from its resourceVersion, without a list,
        after a wait drawn from [0, RECONNECT_SPREAD); one warning.
        """
        self.uniform = Sequence(0.5, 0.25)
        self.start()
        with capturedLogs() as events:
            self.api.drop_watches()
            self.http.flush()
            self.tick(0.25 * RECONNECT_SPREAD - 0.01)
            self.assertEqual(self.kinds(), ["list", "watch"])
            self.tick(0.01)
        self.assertEqual(self.kinds(), ["list", "watch", "watch"])
        self.assertEqual(len([e for e in events if e["log_level"] == LogLevel.warn]), 1)

    def test_early_end_backed_off(self):
        """
        A watch the API server ends well before its timeoutSeconds (a
        server shutting down) is resumed after a backoff, not at once.
        """
        self.start()
        self.tick(60)
        self.api.end_watches()
        self.http.flush()
        self.assertEqual(self.kinds(), ["list", "watch"])
        self.tick(RECONNECT_SPREAD / 2)
        self.assertEqual(self.kinds(), ["list", "watch", "watch"])

    def test_restart_spread(self):
        """
        200 nodes whose watches all break at once (an API server restart)
        come back spread over RECONNECT_SPREAD: no second sees more than a
        tenth of them.
        """
        nodes = 200
        source = random.Random(13)
        syncs = []
        for _ in range(nodes):
            self.uniform = source.random
            self.start()
            syncs.append(self.poller)
        self.api.log[:] = []
        self.api.drop_watches()
        self.http.flush()
        for _ in range(int(RECONNECT_SPREAD) + 1):
            self.tick(1)
        per_second = collections.Counter(int(t) for t, _, _ in self.api.log)
        self.assertEqual(sum(per_second.values()), nodes)
        self.assertLessEqual(max(per_second.values()), nodes / 10)
        self.assertEqual(set(self.kinds()), {"watch"})

    def test_watch_forbidden_polls(self):
        """
        403 on watch (get and list allowed): one warning naming the
        identity; the ConfigMap is then listed every reloadInterval (at
        least MIN_POLL_INTERVAL), jittered, and changes are applied.
        """
        self.api.watch_forbidden = True
        local = LOCAL.replace(b"reloadInterval: 10s", b"reloadInterval: 30s")
        with open(self.path, "wb") as f:
            f.write(local)
        self.holder.publish(schema.load(local)[0])
        with capturedLogs() as events:
            self.start()
            self.change("polled")
            for _ in range(3):
                self.tick(30)
        self.assertEqual(self.kinds(), ["list", "watch", "list", "list", "list"])
        self.assertEqual(self.offline_password(), "polled")
        [warning] = [e for e in events if e["log_level"] == LogLevel.warn and
                     e["log_namespace"] == "cri_shim.sync.configmap.ConfigMapSync"]
        self.assertIn("may not watch", warning["log_format"])
        self.assertEqual((warning["identity"], warning["interval"]),
                         ("service account kube-system/image-cri-shim", 30.0))

    def test_deleted(self):
        """
        A deleted ConfigMap is noted once; the running config stays.
        """
        self.start()
        with capturedLogs() as events:
            self.api.delete_configmap("kube-system", "image-cri-shim")
            self.http.flush()
        self.assertEqual(self.poller.condition, "not-found")
        self.assertEqual(len([e for e in events if "not found" in e["log_format"]]), 1)
        self.assertEqual(self.offline_password(), "cluster:pw")

    def test_sighup_lists_at_once(self):
        """
        SIGHUP (the reloader's hang_up) lists the ConfigMap again at once,
        with the backoff reset, besides re-reading the file: in an outage
        whose next retry is minutes away, the change is applied now.
        """
        self.api.status = 503
        self.start()
        for wait in (15, 30, 60):
            self.tick(wait)
        self.assertEqual(self.api.requests, 4)
        self.api.status = None
        self.change("after-sighup")
        self.reloader.also_on_sighup(self.poller.resync)
        self.successResultOf(self.reloader.hang_up())
        self.http.flush()
        self.assertEqual(self.offline_password(), "after-sighup")
        self.assertEqual(self.kinds()[-2:], ["list", "watch"])
        # The backoff starts from the first window again.
        self.api.drop_watches()
        self.http.flush()
        self.tick(15)
        self.assertEqual(self.kinds()[-1], "watch")
        self.assertEqual(self.api.requests, 7)
