"""
Issue 17, #7: namespace restrictions must not fail open.  The node's file
restricts C{team-a.example} (team-a's login, its CA) to namespace team-a;
the ConfigMap is merged into it as the shim merges it, and the registries a
pull for a team-b pod asks are those the real resolver probes.

  - L{NoValueTests} (#7a): a restriction whose items are all commented out
    (YAML null), in the file or in the ConfigMap, refuses the document,
    naming the key; before, it meant "every namespace" and a team-b pull
    went to team-a's registry with team-a's login.
  - L{SpellingTests} (#7b): a ConfigMap entry spelling team-a's registry
    another way merges with the node's entry, which keeps its C{namespaces}
    and its node-local C{caFile}; before, it replaced it.
"""

import textwrap

import yaml
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, schema
from cri_shim.model.merge import dump, merge, read_cluster_settings
from cri_shim.model.reference import parse
from cri_shim.model.selector import Pod
from cri_shim.registries.resolver import Resolver
from cri_shim.snapshot import SnapshotHolder

LOCAL = """
address: http://sealos.hub:5000
registries:
  - address: https://team-a.example
    auth: {username: team-a, password: team-a-pw}
    priority: 900
    caFile: /etc/image-cri-shim/team-a-ca.pem
    namespaces: [team-a]
"""

TEAM_A, TEAM_B = Pod("web", "team-a"), Pod("web", "team-b")


class _Prober:
    """
    Records which registries are asked, with which login, and holds every
    answer back.
    """

    def __init__(self):
        self.asked = []

    def has_manifest(self, registry, target, timeout):
        self.asked.append((registry.name, registry.credentials and
                           registry.credentials.username))
        return Deferred()


def _merged(cluster):
    """
    :return: the config the shim runs after merging C{cluster} (the
        ConfigMap's text) into L{LOCAL}.
    """
    settings, _ = read_cluster_settings(textwrap.dedent(cluster).encode())
    document, _ = merge(yaml.safe_load(LOCAL), settings)
    return schema.load(dump(document))[0]


def _asked(cfg, pod):
    """
    :return: the registries the resolver asks, with their logins, for a
        pull of C{nginx:1.25} for C{pod}.
    """
    prober = _Prober()
    holder = SnapshotHolder(cfg, Clock().seconds)
    Resolver(prober).resolve(holder.current, parse("nginx:1.25"), pod)
    return prober.asked


class NoValueTests(SynchronousTestCase):
    """
    A restriction written with nothing in it.
    """

    def test_file(self):
        """
        In the node's file, C{namespaces:} with its items commented out is
        refused, naming the key.
        """
        error = self.assertRaises(config.ConfigError, schema.load, LOCAL.replace(
            "namespaces: [team-a]", "namespaces:\n    # - team-a"))
        self.assertEqual(error.problems, [
            "registries[0].namespaces: empty (no namespace is listed): no pod could use this "
            "registry; leave the key out to serve every namespace"])

    def test_configmap(self):
        """
        From the ConfigMap, an entry for a registry the node does not
        restrict, with C{namespaces:} commented out, is refused, naming the
        key (before, the null was dropped and team-b was served).
        """
        error = self.assertRaises(config.ConfigError, _merged, """
            registries:
              - address: https://team-b.example
                auth: {username: team-b, password: team-b-pw}
                namespaces:
                #  - team-b
            """)
        self.assertEqual(error.problems, [
            "registries.yaml: registries[0].namespaces: empty (no namespace is listed): no pod "
            "could use this registry; leave the key out to serve every namespace"])

    def test_the_restriction_holds(self):
        """
        The restriction as written serves team-a only: a team-b pull asks
        the offline registry alone.
        """
        cfg = schema.load(LOCAL)[0]
        self.assertEqual(_asked(cfg, TEAM_B), [("sealos.hub:5000", None)])
        self.assertEqual(_asked(cfg, TEAM_A), [("sealos.hub:5000", None),
                                               ("team-a.example", "team-a")])


class SpellingTests(SynchronousTestCase):
    """
    The ConfigMap names the node's restricted registry another way.
    """

    SPELLINGS = ["team-a.example", "https://team-a.example/", "HTTPS://Team-A.example",
                 "https://team-a.example:443", "team-a.example:443/"]

    def test_restriction_and_ca_kept(self):
        """
        Each spelling keeps the node's C{namespaces} and C{caFile}: a team-b
        pull never asks team-a's registry, a team-a pull asks it with the
        ConfigMap's login.
        """
        for spelling in self.SPELLINGS:
            cfg = _merged("""
                registries:
                  - address: '{}'
                    auth: {{username: team-a, password: rotated-pw}}
                    priority: 900
                """.format(spelling))
            (registry,) = [r for r in cfg.registries if not r.offline]
            self.assertEqual((registry.namespaces, registry.tls.ca_file,
                              registry.credentials.password.reveal() == "rotated-pw"),
                             (("team-a",), "/etc/image-cri-shim/team-a-ca.pem", True),
                             spelling)
            self.assertEqual(_asked(cfg, TEAM_B), [("sealos.hub:5000", None)], spelling)
            self.assertEqual(_asked(cfg, TEAM_A), [("sealos.hub:5000", None),
                                                   (registry.name, "team-a")], spelling)
