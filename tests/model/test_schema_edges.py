"""
Edge cases of L{cri_shim.model.schema} found by mutation testing (make
mutate): the sections read from the file, every problem reported when
several entries are wrong, what is said about keys that need an address,
and the limits of C{admin}, C{healthCheck} and C{configMap}.
"""

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import schema
from cri_shim.model.config import ConfigError, ConfigMapSource, HealthCheck, Notice


def problems(text, **kwargs):
    """
    :return: the problems L{schema.load} finds in C{text}.
    """
    try:
        schema.load(text, **kwargs)
    except ConfigError as e:
        return e.problems
    return []


class SectionTests(SynchronousTestCase):
    """
    The sections L{schema.load} reads into the L{cri_shim.model.config.Config}.
    """

    def test_sections(self):
        """
        C{configMap}, C{healthCheck}, C{allowUpstream} and C{admin} are read
        from the file.
        """
        cfg, notices = schema.load(b"""
configMap: {enabled: false, namespace: ns, name: cm.x, key: k.yaml}
healthCheck: {interval: 7s, timeout: 3s, failureThreshold: 2, successThreshold: 3}
allowUpstream: false
admin: 127.0.0.1:9000
""")
        self.assertEqual((cfg.configmap, cfg.health, cfg.allow_upstream, cfg.admin, notices),
                         (ConfigMapSource(False, "ns", "cm.x", "k.yaml"),
                          HealthCheck(7.0, 3.0, 2, 3), False, "127.0.0.1:9000", []))
        self.assertEqual(problems(b"allowUpstream: x\n"),
                         ["allowUpstream: expected true or false, got 'x'"])

    def test_settings_required(self):
        """
        Asked to refuse a document without settings, C{load} names the
        source, "config" unless told; a document with settings is read.
        """
        self.assertEqual(problems(b"# nothing\n", require_settings=True),
                         ["config: holds no settings (only comments or nothing)"])
        self.assertTrue(schema.load(b"debug: true\n", require_settings=True)[0].debug)


class WithoutAddressTests(SynchronousTestCase):
    """
    Keys of the offline registry given without its C{address}.
    """

    def test_told(self):
        """
        They are ignored, with one warning naming each; their values are
        still checked.
        """
        _, notices = schema.load(b"auth: u:p\nmirrorOf: [docker.io]\ncaFile: /ca.pem\n")
        self.assertEqual(notices, [
            Notice("warn", "auth, mirrorOf, caFile: set without an address; ignored")])
        self.assertEqual(problems(b"mirrorOf: [1]\n"),
                         ["mirrorOf[0]: expected a registry domain, got a number"])


class RegistryEntriesTests(SynchronousTestCase):
    """
    Problems in several C{registries} entries.
    """

    def test_every_entry_checked(self):
        """
        An entry that is wrong does not stop the entries after it from being
        checked.
        """
        self.assertEqual(problems(b"registries: [7, {address: x.io, priority: y}]\n"), [
            "registries[0]: expected a mapping, got a number",
            "registries[1].priority: expected a whole number, got 'y'"])
        wrong_addresses = b'registries: [{address: "a_b:1"}, {address: "ftp://x.io"}]\n'
        self.assertEqual(problems(wrong_addresses), [
            "registries[0].address: invalid registry address 'a_b:1': invalid host 'a_b:1'",
            "registries[1].address: invalid registry address 'ftp://x.io': unsupported scheme "
            "'ftp' (use http or https)"])


class SectionLimitTests(SynchronousTestCase):
    """
    What C{admin}, C{healthCheck} and C{configMap} accept, and what they
    say about the rest.
    """

    def test_admin(self):
        """
        C{admin} is a socket path, C{host:port} with a port from 1 to 65535,
        or C{false} for none; one reachable from other hosts is warned about.
        """
        accepted = [(text, schema.load(b"admin: " + text)) for text in (
            b"false", b"127.0.0.1:1", b"127.0.0.1:65535", b'"[::1]:9000"', b"localhost:9000",
            b"0.0.0.0:9000")]
        self.assertEqual([(text, cfg.admin, notices) for text, (cfg, notices) in accepted], [
            (b"false", "", []),
            (b"127.0.0.1:1", "127.0.0.1:1", []),
            (b"127.0.0.1:65535", "127.0.0.1:65535", []),
            (b'"[::1]:9000"', "[::1]:9000", []),
            (b"localhost:9000", "localhost:9000", []),
            (b"0.0.0.0:9000", "0.0.0.0:9000", [Notice(
                "warn", "admin: 0.0.0.0:9000 is reachable from other hosts; metrics are "
                "served there without authentication")]),
        ])
        self.assertEqual([problems(b"admin: " + text) for text in (
            b"1", b'""', b"127.0.0.1:0", b"127.0.0.1:65536", b"x:abc")], [
            ["admin: expected a socket path, host:port or false, got 1"],
            ["admin: expected a socket path, host:port or false, got ''"],
            ["admin: expected an absolute socket path or host:port, got '127.0.0.1:0'"],
            ["admin: expected an absolute socket path or host:port, got '127.0.0.1:65536'"],
            ["admin: expected an absolute socket path or host:port, got 'x:abc'"]])

    def test_not_a_mapping(self):
        """
        C{healthCheck} and C{configMap} must be mappings.
        """
        self.assertEqual([problems(name + b": 1\n") for name in (b"healthCheck", b"configMap")],
                         [["healthCheck: expected a mapping, got a number"],
                          ["configMap: expected a mapping, got a number"]])

    def test_health_check(self):
        """
        Thresholds run from 1 to 100, the interval from 100 ms; every
        problem is named by its key.
        """
        cfg, _ = schema.load(b"healthCheck: {successThreshold: 100, interval: 0.5s}\n")
        self.assertEqual((cfg.health.success_threshold, cfg.health.interval), (100, 0.5))
        self.assertEqual(problems(b"healthCheck: {failureThreshold: 0, successThreshold: 101, "
                                  b"interval: 50ms, timeout: x}\n"), [
            "healthCheck.failureThreshold: must be between 1 and 100, got 0",
            "healthCheck.successThreshold: must be between 1 and 100, got 101",
            "healthCheck.interval: must be at least 100ms, got '50ms'",
            "healthCheck.timeout: invalid duration 'x': expected a number followed by one of "
            "ns, us, ms, s, m, h"])

    def test_config_map(self):
        """
        Every problem of C{configMap} is named by its key.
        """
        self.assertEqual(problems(b'configMap: {enabled: x, namespace: Bad_NS, name: -x, '
                                  b'key: "a b"}\n'), [
            "configMap.enabled: expected true or false, got 'x'",
            "configMap.namespace: 'Bad_NS' is not a valid namespace",
            "configMap.name: '-x' is not a valid name",
            "configMap.key: 'a b' is not a valid key"])
