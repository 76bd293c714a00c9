"""
Edge cases of L{cri_shim.model.duration} found by mutation testing (make
mutate): Go's exact limit, the sign, and messages that quote the input.
"""

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model.duration import MAX_SECONDS, DurationError, parse_duration
from tests.model.test_duration import INVALID


class DurationEdgeTests(SynchronousTestCase):
    """
    Tests for L{parse_duration} at its edges.
    """

    def test_largest_go_duration(self):
        """
        Go's largest duration, C{time.Duration(math.MaxInt64).String()}, is
        accepted, either sign: the limit is inclusive.
        """
        self.assertEqual(parse_duration("2562047h47m16.854775807s"), MAX_SECONDS)
        self.assertEqual(parse_duration("-2562047h47m16.854775807s"), -MAX_SECONDS)

    def test_only_a_sign_leads(self):
        """
        Only C{+} or C{-} may stand before the number.
        """
        for text in ["X5s", "*5s", "s5s"]:
            self.assertRaises(DurationError, parse_duration, text)

    def test_message_opens_with_the_input(self):
        """
        Every message starts C{invalid duration '<text>': }, the input quoted
        as written, so a config error names the value it refuses.
        """
        wrong = []
        for text, _ in INVALID:
            try:
                parse_duration(text)
            except DurationError as e:
                if not str(e).startswith("invalid duration {!r}: ".format(text)):
                    wrong.append((text, str(e)))
        self.assertEqual(wrong, [])
