"""
Tests for L{cri_shim.model.merge}: the ConfigMap's settings merged into the local
config (the Go shim's cases, and the bugs it has that we must not).
"""

import yaml
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, schema
from cri_shim.model.merge import dump, merge, read_cluster_settings

SAMPLE = b"""
version: v1
sealos:
  address: http://sealos.hub.local:5000
  auth: {username: "1", password: "2"}
registries:
  - address: https://registry-1.docker.io
    auth: {username: "3", password: "4"}
reloadInterval: 5s
cache:
  imageCacheSize: 2048
  imageCacheTTL: 45m
  domainCacheTTL: 15m
  statsLogInterval: 120s
  disableStats: true
"""


def merged_config(local, cluster):
    settings, _ = read_cluster_settings(cluster)
    document, _ = merge(yaml.safe_load(local) if local else {}, settings)
    return document, schema.load(dump(document))[0]


class GoShimCaseTests(SynchronousTestCase):
    def test_into_empty(self):
        """
        Merged into an empty local config, every ConfigMap value arrives;
        C{disableStats} beats the stats interval.
        """
        document, cfg = merged_config(b"", SAMPLE)
        self.assertEqual(document["address"], "http://sealos.hub.local:5000")
        self.assertEqual(document["auth"], "1:2")
        self.assertEqual(document["registries"], [
            {"address": "https://registry-1.docker.io", "auth": "3:4"}])
        self.assertEqual(cfg.reload_interval, 5.0)
        self.assertEqual((cfg.cache.size, cfg.cache.ttl, cfg.cache.stats_interval,
                          cfg.cache.disable_stats), (2048, 45 * 60.0, 0.0, True))
        self.assertEqual(cfg.timeout, 15 * 60.0)

    def test_empty_spec(self):
        """
        An empty ConfigMap document changes nothing.
        """
        local = {"address": "https://keep.example", "auth": "keep:keep"}
        settings, _ = read_cluster_settings(b"")
        self.assertEqual(merge(local, settings), (local, []))

    def test_seeded_with_sockets(self):
        """
        A file holding only shim and cri keeps them and gains the rest.
        """
        document, cfg = merged_config(b"shim: /run/s.sock\ncri: /run/c.sock\n", SAMPLE)
        self.assertEqual((cfg.shim, cfg.cri), ("/run/s.sock", "/run/c.sock"))
        self.assertEqual(cfg.offline.name, "sealos.hub.local:5000")
        self.assertEqual([r.name for r in cfg.registries],
                         ["sealos.hub.local:5000", "docker.io"])

    def test_priorities(self):
        """
        Priorities arrive, offlinePriority included (the Go shim drops it),
        and the old registry list is replaced.
        """
        local = (b"address: http://old.example:5000\nauth: old:old\n"
                 b"registries: [{address: https://old-registry.io}]\n")
        cluster = (b"sealos: {address: http://sealos.hub:5000}\nofflinePriority: 900\n"
                   b"registries:\n  - {address: docker.io, priority: 600}\n"
                   b"  - {address: registry.example.com, priority: 800}\n")
        document, cfg = merged_config(local, cluster)
        self.assertEqual(document["offlinePriority"], 900)
        self.assertEqual([(r.name, r.priority) for r in cfg.registries], [
            ("sealos.hub:5000", 900), ("registry.example.com", 800), ("docker.io", 600)])

    def test_raw_priorities(self):
        """
        Priorities are stored as given; defaults and clamps apply when the
        file is loaded.
        """
        cluster = (b"offlinePriority: 12000\nregistries:\n  - {address: docker.io, priority: 0}\n"
                   b"  - {address: r.example.com, priority: 15000}\n")
        document, cfg = merged_config(b"address: http://sealos.hub:5000\n", cluster)
        self.assertEqual(document["offlinePriority"], 12000)
        self.assertEqual([r["priority"] for r in document["registries"]], [0, 15000])
        self.assertEqual(sorted((r.name, r.priority) for r in cfg.registries), [
            ("docker.io", 500), ("r.example.com", 10000), ("sealos.hub:5000", 10000)])


class FixedRulesTests(SynchronousTestCase):
    def test_absent_keys_keep_local(self):
        """
        Keys the ConfigMap does not have leave the local values alone (the
        Go shim empties the registry list and resets reloadInterval).
        """
        local = {"registries": [{"address": "https://m.example"}], "reloadInterval": "7s",
                 "debug": True}
        settings, _ = read_cluster_settings(b"sealos: {address: http://sealos.hub:5000}\n")
        merged, _ = merge(local, settings)
        self.assertEqual(merged["registries"], local["registries"])
        self.assertEqual(merged["reloadInterval"], "7s")
        self.assertIs(merged["debug"], True)

    def test_password_verbatim(self):
        """
        A password is taken as it is: colons, spaces and all.
        """
        settings, _ = read_cluster_settings(
            b'sealos: {address: http://h.example, auth: {username: " u ", password: " p:a:s "}}')
        document, _ = merge({}, settings)
        self.assertEqual(document["auth"], "u: p:a:s ")
        cfg = schema.load(dump(document))[0]
        self.assertEqual(cfg.offline.credentials.password.reveal(), " p:a:s ")

    def test_unknown_keys_kept(self):
        """
        Keys of the local file this shim does not know survive, and a key
        spelled in another case is replaced, not doubled.
        """
        local = {"sync": "legacy", "ReloadInterval": "30s", "image": "x"}
        settings, _ = read_cluster_settings(b"reloadInterval: 5s\n")
        self.assertEqual(merge(local, settings)[0],
                         {"sync": "legacy", "ReloadInterval": "5s", "image": "x"})

    def test_registry_local_keys_kept(self):
        """
        A registry the local file already had keeps its other settings (a CA
        file, mirrorOf); its credentials and priority follow the ConfigMap,
        which can remove them.
        """
        local = {"registries": [{"address": "https://m.example", "auth": "old:pw",
                                 "priority": 700, "caFile": "/etc/ca.pem"}]}
        settings, _ = read_cluster_settings(b"registries: [{address: https://m.example}]\n")
        self.assertEqual(merge(local, settings)[0]["registries"],
                         [{"caFile": "/etc/ca.pem", "address": "https://m.example"}])

    def test_input_untouched(self):
        """
        The local document given is not modified.
        """
        local = {"registries": [{"address": "https://m.example"}]}
        settings, _ = read_cluster_settings(b"registries: [{address: https://n.example}]\n")
        merge(local, settings)
        self.assertEqual(local, {"registries": [{"address": "https://m.example"}]})


class ClusterSettingsErrorTests(SynchronousTestCase):
    def test_problems_named(self):
        """
        Every problem is named with its key, prefixed by the source.
        """
        error = self.assertRaises(config.ConfigError, read_cluster_settings, (
            b"force: maybe\nofflinePriority: high\nregistries: {a: 1}\n"
            b"sealos: {auth: {username: 'a:b', password: x}}\n"))
        self.assertEqual(sorted(p.split(":")[1].strip() for p in error.problems), [
            "force", "offlinePriority", "registries", "sealos.auth.username"])
        for problem in error.problems:
            self.assertTrue(problem.startswith("registries.yaml: "), problem)

    def test_bad_yaml(self):
        """
        Broken YAML is an error that does not quote the document.
        """
        error = self.assertRaises(config.ConfigError, read_cluster_settings,
                                  b"sealos:\n  auth: {password: hunter2\n")
        self.assertIn("invalid YAML", error.problems[0])
        self.assertNotIn("hunter2", str(error))

    def test_unknown_keys_warned(self):
        """
        Keys the schema does not have are ignored with a warning naming them;
        C{version} is part of the schema and ignored quietly.
        """
        _, notices = read_cluster_settings(b"color: blue\nversion: v1\n")
        self.assertEqual([(n.level, n.message) for n in notices], [
            ("warn", "ignoring unknown key color")])


class SameRegistryTests(SynchronousTestCase):
    """
    A ConfigMap entry for a registry the node's file has, spelled another
    way, merges with the local entry (issue 17, #7b).
    """

    LOCAL = b"""
registries:
  - address: https://team-a.example
    auth: a:a-pw
    namespaces: [team-a]
    caFile: /etc/team-a/ca.pem
"""

    def test_spellings_merge(self):
        """
        Whatever its case, trailing slash, scheme or default port, the
        ConfigMap's entry keeps the node's C{namespaces} and C{caFile}; its
        own keys (address, login) win.
        """
        for spelling in ("team-a.example", "https://team-a.example/", "HTTPS://Team-A.example",
                         "team-a.example/", "https://team-a.example:443", "Team-A.example:443/",
                         "http://team-a.example"):
            cluster = "registries: [{{address: '{}', auth: {{username: a, password: new}}}}]\n"
            document, cfg = merged_config(self.LOCAL, cluster.format(spelling).encode())
            self.assertEqual(document["registries"], [
                {"namespaces": ["team-a"], "caFile": "/etc/team-a/ca.pem",
                 "address": spelling, "auth": "a:new"}], spelling)
            (registry,) = cfg.registries
            self.assertEqual((registry.namespaces, registry.tls.ca_file),
                             (("team-a",), "/etc/team-a/ca.pem"), spelling)

    def test_other_registries_replace(self):
        """
        Another port, prefix or host is another registry: the local entry
        is not carried to it.
        """
        for address in ("team-a.example:5000", "team-a.example/proxy", "team-b.example",
                        "http://team-a.example:443"):
            document, _ = merged_config(self.LOCAL, "registries: [{{address: '{}'}}]\n".format(
                address).encode())
            self.assertEqual(document["registries"], [{"address": address}], address)

    def test_first_local_twin_kept(self):
        """
        Of two local entries for one registry, the one the node uses (the
        first; the second is ignored) is the one merged.
        """
        local = b"""
registries:
  - {address: https://team-a.example, namespaces: [team-a]}
  - {address: TEAM-A.example, namespaces: [team-b]}
"""
        document, _ = merged_config(local, b"registries: [{address: team-a.example}]\n")
        self.assertEqual(document["registries"], [
            {"namespaces": ["team-a"], "address": "team-a.example"}])

    def test_offline_login_follows_the_registry(self):
        """
        C{sealos.address} spelled another way (case, default port) is the
        same registry: the local login stays; moved to http it does not.
        """
        local = b"address: https://sealos.hub\nauth: admin:pw\n"
        for address, auth in [("HTTPS://Sealos.Hub:443/", "admin:pw"),
                              ("sealos.hub", "admin:pw"),
                              ("http://sealos.hub", None),
                              ("sealos.hub:5000", None)]:
            document, _ = merged_config(local, "sealos: {{address: '{}'}}\n".format(
                address).encode())
            self.assertEqual(document.get("auth"), auth, address)
