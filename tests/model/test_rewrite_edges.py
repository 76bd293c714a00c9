"""
Edge cases of L{cri_shim.model.rewrite} found by mutation testing (make
mutate): failover order with registries down, a registry whose prefix makes
the name too long, and decisions as the values the cache shares.
"""

import attr
from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import config, reference, rewrite
from cri_shim.testing import registry_config
from tests.model.test_rewrite import HARBOR, MIRROR, OFFLINE, make_config


class CandidateOrderTests(SynchronousTestCase):
    """
    Tests for L{rewrite.candidates}' failover order.
    """

    def test_down_registries_last(self):
        """
        Registries found down come after every other candidate, each group
        still by priority.
        """
        cfg = make_config(OFFLINE, HARBOR, MIRROR)
        found = rewrite.candidates(cfg, reference.parse("nginx"), down={"sealos.hub:5000"})
        self.assertEqual([c.registry.name for c in found],
                         ["harbor.local/proxy", "mirror.example", "sealos.hub:5000"])

    def test_name_too_long_there(self):
        """
        A registry under whose prefix the image's name would be longer than
        a repository name may be cannot hold it; the registries after it are
        still candidates.
        """
        deep = registry_config("https://deep.example/" + "p" * 200, priority=900)
        cfg = make_config(deep, MIRROR)
        ref = reference.parse("example.com/" + "a" * 60)
        self.assertEqual([c.registry for c in rewrite.candidates(cfg, ref)], [MIRROR])


class DecisionValueTests(SynchronousTestCase):
    """
    L{rewrite.Decision} and L{rewrite.Candidate} as values.
    """

    def test_sources_as_shown(self):
        """
        Decision sources are the words the log (C{source=probe}) and the
        admin endpoint's C{source} field show.
        """
        self.assertEqual(
            (rewrite.CONFIGURED, rewrite.PROBE, rewrite.NOBODY, rewrite.NO_REGISTRIES),
            ("configured", "probe", "nobody", "no-registries"))

    def test_nothing_asked(self):
        """
        A decision made without a lookup asked no registry.
        """
        decisions = [
            rewrite.decide_without_lookup(make_config(OFFLINE),
                                          reference.parse("sealos.hub:5000/library/nginx")),
            rewrite.decide_without_lookup(config.Config(), reference.parse("nginx")),
        ]
        self.assertEqual([(d.source, d.tried) for d in decisions],
                         [(rewrite.CONFIGURED, ()), (rewrite.NO_REGISTRIES, ())])

    def test_immutable(self):
        """
        Decisions and candidates cannot be changed: a cached decision is
        shared by every call for the image, on several worker threads.
        """
        ref = reference.parse("nginx")
        decision = rewrite.Decision(ref, None, None, rewrite.NOBODY)
        candidate = rewrite.Candidate(OFFLINE, ref)
        self.assertRaises(attr.exceptions.FrozenInstanceError, setattr, decision, "target", ref)
        self.assertRaises(attr.exceptions.FrozenInstanceError, setattr, candidate, "target", ref)
