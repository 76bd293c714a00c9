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


PASSWORD = "s3cret-pw"


def scrub(text):
    return text.replace(PASSWORD, "<redacted>")


class ScrubFirstTests(SynchronousTestCase):
    """
    Passwords are scrubbed from whole texts before they are shortened: a
    cut never leaves a password's prefix (issue 17, #11).
    """

    def test_straddling_reason_cut(self):
        """
        A runtime's error whose password straddles the cut of one
        registry's reason (160) shows none of it.
        """
        details = "failed to resolve: " + "y" * 150 + " " + PASSWORD + " and more"
        event = podevent.failed_over(POD, "nginx:1", [("hub", details)])
        message = event.render(scrub)
        self.assertNotIn(PASSWORD[:3], message)
        self.assertIn("hub pull failed: " + "y" * 150 + " <redac...", message)

    def test_straddling_message_cut(self):
        """
        A text whose password straddles the message's cut (1024) shows none
        of it; the message is still cut there.
        """
        padding = "x" * (podevent.MAX_MESSAGE - 6 - len("refused "))
        message = podevent.refused(POD, padding + PASSWORD + ":1", ()).render(scrub)
        self.assertNotIn(PASSWORD[:3], message)
        self.assertEqual(message, "refused " + padding + "<re...")
        self.assertEqual(len(message), podevent.MAX_MESSAGE)

    def test_whitespace_and_clauses_after_scrub(self):
        """
        A password holding spaces or C{": "} is scrubbed before the reason
        is folded to one line or cut to its last clause.
        """
        spaced = "pass: word  two"
        details = "failed: token " + spaced
        event = podevent.pulled(POD, "nginx:1", KEPT, [("hub", details)])
        message = event.render(lambda text: text.replace(spaced, "<redacted>"))
        self.assertEqual(message, "pulled nginx:1 from its own registry (hub pull failed: "
                         "token <redacted>)")

    def test_huge_error_not_kept(self):
        """
        An error longer than L{podevent.MAX_TEXT} is replaced whole (events
        wait in a queue), never cut: no prefix of it is kept.
        """
        huge = "x" * podevent.MAX_TEXT + PASSWORD
        event = podevent.failed_over(POD, "nginx:1", [("hub", huge), ("b", "y" * 10)])
        self.assertEqual(event.failures, (
            ("hub", "(an error of {} characters, not shown)".format(len(huge))),
            ("b", "y" * 10)))
        self.assertEqual(podevent.failed_over(POD, "n", [("a", huge[:podevent.MAX_TEXT])])
                         .failures[0][1], huge[:podevent.MAX_TEXT])

    def test_unscrubbed_message(self):
        """
        C{message} is the render without a scrub.
        """
        event = podevent.failed_over(POD, "nginx:1", [("hub", "boom")])
        self.assertEqual(event.message, event.render())


class NameTests(SynchronousTestCase):
    """
    Pods whose names the API server would not take make no Event (issue 17,
    #10), and Event names stay valid.
    """

    def test_valid(self):
        """
        A DNS-1123 label namespace and a DNS-1123 subdomain name are fine.
        """
        for pod in (POD, Pod("a", "b"), Pod("web-1.x-2", "k" * 63), Pod("p" * 253, "ns"),
                    Pod("0", "9")):
            self.assertIsNone(podevent.name_problem(pod), pod)

    def test_namespace(self):
        """
        A namespace that is not a DNS-1123 label of at most 63 characters.
        """
        for namespace in ("kube-system/configmaps/image-cri-shim?x=", "", "Team-A", "-a",
                          "a-", "a.b", "k" * 64, "a\n", "a b", "ä", "..", "%2e"):
            self.assertEqual(podevent.name_problem(Pod("web-1", namespace)), "namespace",
                             namespace)

    def test_name(self):
        """
        A name that is not a DNS-1123 subdomain of at most 253 characters.
        """
        for name in ("../configmaps/x", "a/b", "", "Web", "a..b", ".a", "a.", "-a",
                     "p" * 254, "a\n", "a?x=1", "a#b", "%41"):
            self.assertEqual(podevent.name_problem(Pod(name, "ns")), "name", name)

    def test_event_name(self):
        """
        The pod's name, a dot, the time and serial in hex; a long name is
        shortened so that the whole is a valid name of at most 253
        characters, never ending its first part in C{-} or C{.}.
        """
        self.assertEqual(podevent.event_name("web-1", 1700000000.5, 0x10003),
                         "web-1.{:x}0003".format(1700000000500000000))
        for name in ("p" * 253, "p" * 231 + "-" + "q" * 21, "p" * 230 + ".x" * 11):
            made = podevent.event_name(name, 1700000000.5, 7)
            self.assertLessEqual(len(made), podevent.MAX_NAME)
            self.assertIsNone(podevent.name_problem(Pod(made, "ns")), made)
            self.assertTrue(made.startswith("p" * 200), made)
