"""
Tests for L{cri_shim.model.rewrite}: candidate naming and order, the lookups that
need no registry, local names, and which credentials a pull may carry.
"""

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, reference, rewrite
from cri_shim.testing import registry_config

OFFLINE = registry_config("http://sealos.hub:5000", "admin", "pw", priority=1000, offline=True)
HARBOR = registry_config("https://harbor.local/proxy", "h", "hpw", priority=1000)
MIRROR = registry_config("https://mirror.example", priority=500)


def make_config(*registries):
    ordered = sorted(registries, key=lambda r: (-r.priority, not r.offline, r.name))
    return config.Config(registries=tuple(ordered))


class CandidatesTests(SynchronousTestCase):
    def test_naming(self):
        """
        The image keeps its repository path (with Docker Hub's C{library/})
        under each registry, with a path prefix in front; the source host is
        dropped, tag and digest kept.
        """
        cfg = make_config(OFFLINE, HARBOR, MIRROR)
        digest = "sha256:" + "0f" * 32
        table = [
            ("nginx", ["sealos.hub:5000/library/nginx", "harbor.local/proxy/library/nginx",
                       "mirror.example/library/nginx"]),
            ("registry.k8s.io/pause:3.9", ["sealos.hub:5000/pause:3.9",
                                           "harbor.local/proxy/pause:3.9",
                                           "mirror.example/pause:3.9"]),
            ("myreg:5000/a/b@" + digest, ["sealos.hub:5000/a/b@" + digest,
                                          "harbor.local/proxy/a/b@" + digest,
                                          "mirror.example/a/b@" + digest]),
            ("quay.io/x/y:1@" + digest, ["sealos.hub:5000/x/y:1@" + digest,
                                         "harbor.local/proxy/x/y:1@" + digest,
                                         "mirror.example/x/y:1@" + digest]),
        ]
        for image, expected in table:
            found = rewrite.candidates(cfg, reference.parse(image))
            self.assertEqual([str(c.target) for c in found], expected, image)

    def test_order_ties(self):
        """
        Priority descending; on a tie the offline registry first, then by
        name.
        """
        cfg = make_config(MIRROR, HARBOR, OFFLINE)
        names = [c.registry.name for c in rewrite.candidates(cfg, reference.parse("nginx"))]
        self.assertEqual(names, ["sealos.hub:5000", "harbor.local/proxy", "mirror.example"])

    def test_exclude(self):
        """
        Excluded registries are left out.
        """
        cfg = make_config(OFFLINE, MIRROR)
        found = rewrite.candidates(cfg, reference.parse("nginx"), {"sealos.hub:5000"})
        self.assertEqual([c.registry for c in found], [MIRROR])


class DecideWithoutLookupTests(SynchronousTestCase):
    def test_configured(self):
        """
        An image naming a configured registry's host stays as it is, with
        that registry (so its credentials), idempotently.
        """
        cfg = make_config(OFFLINE, MIRROR)
        for image in ("sealos.hub:5000/library/nginx:latest", "mirror.example/a"):
            decision = rewrite.decide_without_lookup(cfg, reference.parse(image))
            self.assertEqual(decision.source, rewrite.CONFIGURED)
            self.assertFalse(decision.moved)
        self.assertIs(rewrite.decide_without_lookup(
            cfg, reference.parse("mirror.example/a")).registry, MIRROR)

    def test_needs_lookup(self):
        """
        Other images need the registries to be asked.
        """
        cfg = make_config(OFFLINE)
        self.assertIsNone(rewrite.decide_without_lookup(cfg, reference.parse("nginx")))

    def test_no_registries(self):
        """
        Nothing configured: not moved, nothing asked.
        """
        decision = rewrite.decide_without_lookup(config.Config(), reference.parse("nginx"))
        self.assertEqual((decision.source, decision.registry), (rewrite.NO_REGISTRIES, None))


class LocalNamesTests(SynchronousTestCase):
    def test_order(self):
        """
        Cached target first, then the name as asked, then each candidate's
        name, without duplicates.
        """
        cfg = make_config(OFFLINE, MIRROR)
        ref = reference.parse("nginx")
        cached = rewrite.Decision(ref, reference.parse("mirror.example/library/nginx"),
                                  MIRROR, rewrite.PROBE)
        self.assertEqual(list(rewrite.local_names(cfg, ref, cached)), [
            "mirror.example/library/nginx", "docker.io/library/nginx",
            "sealos.hub:5000/library/nginx"])
        self.assertEqual(list(rewrite.local_names(cfg, ref)), [
            "docker.io/library/nginx", "sealos.hub:5000/library/nginx",
            "mirror.example/library/nginx"])

    def test_configured_name(self):
        """
        An image naming a configured registry is only looked up as itself.
        """
        cfg = make_config(OFFLINE, MIRROR)
        ref = reference.parse("sealos.hub:5000/library/nginx:1")
        self.assertEqual(list(rewrite.local_names(cfg, ref)), ["sealos.hub:5000/library/nginx:1"])


class PullCredentialsTests(SynchronousTestCase):
    def test_table(self):
        """
        Kubelet's credentials are replaced whenever the image moves (even by
        nothing, when the target registry has no login); kept when the image
        stays where it is; a configured registry's login is used when kubelet
        sent none.
        """
        ref = reference.parse("nginx")
        moved = rewrite.Decision(ref, reference.parse("sealos.hub:5000/library/nginx"),
                                 OFFLINE, rewrite.PROBE)
        configured = rewrite.Decision(ref, None, OFFLINE, rewrite.CONFIGURED)
        nobody = rewrite.Decision(ref, None, None, rewrite.NOBODY)
        table = [
            (moved, True, rewrite.REPLACE),
            (moved, False, rewrite.REPLACE),
            (configured, True, rewrite.KEEP),
            (configured, False, rewrite.REPLACE),
            (nobody, True, rewrite.KEEP),
            (nobody, False, rewrite.KEEP),
        ]
        for decision, sent, expected in table:
            self.assertIs(rewrite.pull_credentials(decision, sent), expected,
                          (decision.source, sent))

    def test_cache_key(self):
        """
        Spellings of one image share a cache key.
        """
        keys = {rewrite.cache_key(reference.parse(image)) for image in (
            "nginx", "nginx:latest", "docker.io/library/nginx", "index.docker.io/library/nginx")}
        self.assertEqual(keys, {"docker.io/library/nginx:latest"})
