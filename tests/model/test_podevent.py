"""
Tests for L{cri_shim.model.podevent}: which pulls make a pod event, with
which reason, type and message.
"""

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import podevent, rewrite
from cri_shim.model.reference import parse
from cri_shim.model.selector import Pod
from cri_shim.testing import registry_config

POD = Pod("web-1", "team-a", "uid-1")
HUB = registry_config("http://sealos.hub:5000", priority=1000, offline=True)
REF = parse("nginx:latest")
MOVED = rewrite.Decision(REF, parse("sealos.hub:5000/library/nginx:latest"), HUB,
                         rewrite.PROBE)
KEPT = rewrite.Decision(REF, None, None, rewrite.NOBODY)
REFUSED_DETAILS = ('failed to pull and unpack image "a.example/library/nginx:latest": failed '
                   'to resolve reference: dial tcp 10.0.0.1:443: connect: connection refused')


class PulledTests(SynchronousTestCase):
    def test_rewritten(self):
        """
        A pull moved to a registry: ImageRewritten, Normal, naming both.
        """
        self.assertEqual(podevent.pulled(POD, "nginx:latest", MOVED), podevent.PodEvent(
            POD, "ImageRewritten", "Normal",
            "pulled nginx:latest from sealos.hub:5000 as sealos.hub:5000/library/nginx:latest"))

    def test_nothing_to_tell(self):
        """
        No event without a pod (crictl, pre-pulls), nor for a pull neither
        moved nor failed over.
        """
        self.assertIsNone(podevent.pulled(None, "nginx:latest", MOVED))
        self.assertIsNone(podevent.pulled(POD, "nginx:latest", KEPT))
        self.assertIsNone(podevent.refused(None, "nginx:latest", ()))
        self.assertIsNone(podevent.failed_over(None, "nginx:latest", ()))

    def test_failover(self):
        """
        Registries passed over in the lookup, and pulls that failed before,
        make a RegistryFailover warning saying why, in a few words.
        """
        decision = rewrite.Decision(REF, MOVED.target, HUB, rewrite.PROBE,
                                    passed_over=(("a.example", "unreachable: refused"),))
        event = podevent.pulled(POD, "nginx:latest", decision,
                                [("b.example", REFUSED_DETAILS)])
        self.assertEqual((event.reason, event.type), ("RegistryFailover", "Warning"))
        self.assertEqual(event.message, (
            "pulled nginx:latest from sealos.hub:5000 as sealos.hub:5000/library/nginx:latest "
            "(a.example unreachable: refused; b.example pull failed: connection refused)"))
        event = podevent.pulled(POD, "nginx:latest", KEPT, [("b.example", "boom")])
        self.assertEqual(event.message, "pulled nginx:latest from its own registry "
                         "(b.example pull failed: boom)")

    def test_failed_over_and_refused(self):
        """
        A pull that failed on every registry holding the image, and a pull
        refused under C{allowUpstream: false}, are warnings.
        """
        event = podevent.failed_over(POD, "nginx:latest", [("b.example", REFUSED_DETAILS)])
        self.assertEqual((event.reason, event.type, event.message), (
            "RegistryFailover", "Warning", "could not pull nginx:latest (b.example pull "
            "failed: connection refused); no other configured registry has it"))
        event = podevent.refused(POD, "x:1", ("a.example", "b.example"))
        self.assertEqual((event.reason, event.type, event.message), (
            "ImageRefused", "Warning", "refused x:1: no configured registry serving this pod "
            "has it (asked: a.example, b.example) and allowUpstream is false"))

    def test_long_message_cut(self):
        """
        Messages stay within L{podevent.MAX_MESSAGE}.
        """
        failures = [("r{}.example".format(i), "x" * 300) for i in range(20)]
        event = podevent.failed_over(POD, "nginx:latest", failures)
        self.assertEqual(len(event.message), podevent.MAX_MESSAGE)
        self.assertTrue(event.message.endswith("..."))
