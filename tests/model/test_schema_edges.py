"""
Edge cases of L{cri_shim.model.schema} found by mutation testing (make
mutate): the sections read from the file, every problem reported when
several entries are wrong, and what is said about keys that need an address.
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
healthCheck: {interval: 10s, timeout: 3s, failureThreshold: 2, successThreshold: 3}
allowUpstream: false
admin: 127.0.0.1:9000
""")
        self.assertEqual((cfg.configmap, cfg.health, cfg.allow_upstream, cfg.admin, notices),
                         (ConfigMapSource(False, "ns", "cm.x", "k.yaml"),
                          HealthCheck(10.0, 3.0, 2, 3), False, "127.0.0.1:9000", []))
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
