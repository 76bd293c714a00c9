"""
Tests for L{cri_shim.model.rewrite}: candidate naming and order, the lookups that
need no registry, local names, and which credentials a pull may carry.
"""

import attr
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, reference, rewrite, selector
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


class TenantTests(SynchronousTestCase):
    """
    Names whose image depends on the pod (issue 17, finding 1).
    """

    def setUp(self):
        self.team_a = attr.evolve(MIRROR, namespaces=("team-a",))
        self.cfg = make_config(OFFLINE, self.team_a)
        self.ref = reference.parse("nginx:1")
        self.pod_a = selector.Pod("web", "team-a")
        self.pod_b = selector.Pod("web", "team-b")

    def test_contested(self):
        """
        A name is contested when a restricted registry may serve it or it
        names one; never when pinned by digest, nor when the restricted
        registry serves other domains only.
        """
        digest = "nginx@sha256:" + "a" * 64
        quay_only = make_config(OFFLINE, attr.evolve(self.team_a, mirror_of=("quay.io",)))
        unrestricted = make_config(OFFLINE, MIRROR)
        table = [
            (self.cfg, "nginx:1", True), (self.cfg, digest, False),
            (self.cfg, "mirror.example/app:1", True), (self.cfg, "sealos.hub:5000/app:1", False),
            (quay_only, "nginx:1", False), (quay_only, "quay.io/a/b:1", True),
            (unrestricted, "nginx:1", False), (unrestricted, "mirror.example/app:1", False)]
        for cfg, name, expected in table:
            self.assertEqual(rewrite.contested(cfg, reference.parse(name)), expected, name)

    def test_scope_only_registries_serving_the_image(self):
        """
        A pod's scope for an image holds the restricted registries that
        serve both: none for an image they do not serve.
        """
        quay_only = make_config(OFFLINE, attr.evolve(self.team_a, mirror_of=("quay.io",)))
        self.assertEqual(rewrite.scope(self.cfg, self.ref, self.pod_a), (MIRROR.name,))
        self.assertEqual(rewrite.scope(self.cfg, self.ref, self.pod_b), ())
        self.assertEqual(rewrite.scope(self.cfg, self.ref, None), ())
        self.assertEqual(rewrite.scope(quay_only, self.ref, self.pod_a), ())

    def test_local_names_contested(self):
        """
        For a contested name, a lookup without a pod finds nothing; one for
        a pod only what was stored or cached for its scope; a stored name on
        a registry that does not serve the pod is not trusted.
        """
        private = "mirror.example/library/nginx:1"
        cached = rewrite.Decision(self.ref, reference.parse(private), self.team_a, rewrite.PROBE)
        self.assertEqual(list(rewrite.local_names(self.cfg, self.ref, cached, private)), [])
        self.assertEqual(list(rewrite.local_names(self.cfg, self.ref, cached, private,
                                                  self.pod_a)), [private])
        self.assertEqual(list(rewrite.local_names(self.cfg, self.ref, None, None,
                                                  self.pod_a)), [])
        self.assertEqual(list(rewrite.local_names(self.cfg, self.ref, None, private,
                                                  self.pod_b)), [])
        public = "sealos.hub:5000/library/nginx:1"
        self.assertEqual(list(rewrite.local_names(self.cfg, self.ref, None, public,
                                                  self.pod_b)), [public])

    def test_trusted(self):
        """
        A recorded name is trusted for a pod when its registry serves the
        pod, or is not configured.
        """
        for name, pod, expected in [
                ("mirror.example/library/nginx:1", self.pod_a, True),
                ("mirror.example/library/nginx:1", self.pod_b, False),
                ("mirror.example/library/nginx:1", None, False),
                ("sealos.hub:5000/library/nginx:1", None, True),
                ("elsewhere.example/nginx:1", self.pod_b, True)]:
            self.assertEqual(rewrite.trusted(self.cfg, reference.parse(name), pod), expected,
                             (name, pod))


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
