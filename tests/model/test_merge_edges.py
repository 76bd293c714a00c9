"""
Edge cases of L{cri_shim.model.merge} found by mutation testing (make
mutate): every key of the ConfigMap read, every problem named by its key,
the local keys a merge keeps, and the form of the file written.
"""

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model.config import ConfigError, Notice
from cri_shim.model.merge import dump, merge, read_cluster_settings

EVERY_KEY = b"""
sealos: {address: http://sealos.hub:5000, auth: {username: admin, password: pw}}
registries:
- {auth: {username: x}}
- address: https://a.example
  auth: {username: ' u '}
  priority: 10
  mirrorOf: [docker.io]
- {address: https://b.example, auth: {password: p}, caFile: null}
- {address: https://c.example, auth: {username: '', password: ''}}
offlinePriority: 5
reloadInterval: 1m
force: true
debug: true
timeout: 30s
cache: {imageCacheSize: 10, imageCacheTTL: 1h, negativeCacheTTL: 1m, statsLogInterval: 5m,
        disableStats: true, domainCacheTTL: 1h}
"""


class ReadClusterSettingsEdgeTests(SynchronousTestCase):
    """
    L{read_cluster_settings} on every key it knows and on wrong values.
    """

    def test_every_key(self):
        """
        Every key of the schema is read by its canonical name; a login with
        only a user name or only a password keeps the other empty, one with
        neither is no login; an entry without an address is skipped with a
        warning, and a legacy cache key is noted.
        """
        settings, notices = read_cluster_settings(EVERY_KEY)
        self.assertEqual(settings, {
            "address": "http://sealos.hub:5000",
            "auth": "admin:pw",
            "registries": [
                {"mirrorOf": ["docker.io"], "address": "https://a.example", "auth": "u:",
                 "priority": 10},
                {"address": "https://b.example", "auth": ":p"},
                {"address": "https://c.example"},
            ],
            "force": True,
            "debug": True,
            "offlinePriority": 5,
            "reloadInterval": "1m",
            "timeout": "30s",
            "cache": {"imageCacheSize": 10, "imageCacheTTL": "1h", "negativeCacheTTL": "1m",
                      "statsLogInterval": "5m", "disableStats": True},
        })
        self.assertEqual(notices, [
            Notice("warn", "registries[0]: no address; entry skipped"),
            Notice("info", "ignoring legacy key cache.domainCacheTTL (not used by this shim)")])

    def test_empty(self):
        """
        An empty document holds no settings.
        """
        self.assertEqual(read_cluster_settings(b""), ({}, []))

    def test_every_problem_named(self):
        """
        Every problem in the document is reported, each by its key.
        """
        error = self.assertRaises(ConfigError, read_cluster_settings, b"""
sealos: {address: [], auth: {username: 'a:b'}}
registries:
- 7
- {address: https://a.example, auth: {username: 1}, priority: x}
- {address: https://b.example, auth: {password: 2}}
- {address: []}
cache: 1
""")
        self.assertEqual(error.problems, [
            "registries.yaml: sealos.address: expected a string, got a list",
            "registries.yaml: sealos.auth.username: must not contain ':'",
            "registries.yaml: registries[0]: expected a mapping, got a number",
            "registries.yaml: registries[1].auth.username: expected a string",
            "registries.yaml: registries[1].priority: expected a whole number, got 'x'",
            "registries.yaml: registries[2].auth.password: expected a string",
            "registries.yaml: registries[3].address: expected a string, got a list",
            "registries.yaml: cache: expected a mapping, got a number",
        ])
        error = self.assertRaises(ConfigError, read_cluster_settings,
                                  b"sealos: 1\nregistries: 1\n")
        self.assertEqual(error.problems, [
            "registries.yaml: sealos: expected a mapping, got a number",
            "registries.yaml: registries: expected a list"])


class MergeEdgeTests(SynchronousTestCase):
    """
    L{merge} and L{dump}.
    """

    def test_local_keys_kept(self):
        """
        Settings replace the local values under whatever case the local file
        spells their keys; the local cache keys the ConfigMap does not set
        stay, and so do a registry entry's keys the ConfigMap does not own.
        The local document itself is not changed.
        """
        settings, _ = read_cluster_settings(b"""
registries: [{address: https://a.example, auth: {username: u}}]
force: true
debug: true
timeout: 30s
cache: {imageCacheTTL: 1h}
""")
        local = {"version": "v1", "Cache": {"imageCacheSize": 99, "imageCacheTTL": "2h"},
                 "registries": [{"address": "https://a.example", "caFile": "/old.pem",
                                 "Auth": "old:old", "extra": 1}],
                 "Force": False}
        merged, _ = merge(local, settings)
        self.assertEqual(merged, {
            "version": "v1", "Cache": {"imageCacheSize": 99, "imageCacheTTL": "1h"},
            "registries": [{"caFile": "/old.pem", "extra": 1, "address": "https://a.example",
                            "auth": "u:"}],
            "Force": True, "debug": True, "timeout": "30s"})
        self.assertEqual(local["Cache"], {"imageCacheSize": 99, "imageCacheTTL": "2h"})

    def test_dump_form(self):
        """
        The file is written in block style, keys in their order, UTF-8 text
        as it is.
        """
        self.assertEqual(dump({"b": 1, "a": {"x": ["\u00e9"]}}),
                         b"b: 1\na:\n  x:\n  - \xc3\xa9\n")
