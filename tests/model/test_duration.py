"""
Tests for L{cri_shim.model.duration}: Go duration strings to seconds and back.

The valid and invalid inputs follow Go's C{time.ParseDuration}.
"""

import math

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model.duration import (
    MAX_SECONDS,
    DurationError,
    format_duration,
    parse_duration,
)

# (text, seconds)
VALID = [
    ("0", 0.0),
    ("+0", 0.0),
    ("-0", 0.0),
    ("0s", 0.0),
    ("1ns", 1e-9),
    ("1500ns", 1.5e-6),
    ("1us", 1e-6),
    ("1\u00b5s", 1e-6),  # MICRO SIGN, as Go accepts
    ("1\u03bcs", 1e-6),  # GREEK SMALL LETTER MU, as Go accepts
    ("250ms", 0.25),
    ("5s", 5.0),
    ("15s", 15.0),
    ("15m", 900.0),
    ("30m", 1800.0),
    ("2h", 7200.0),
    ("1.5h", 5400.0),
    ("1h30m", 5400.0),
    ("1h2m3.5s", 3723.5),
    ("1m1s1ms", 61.001),
    ("3s2s", 5.0),  # Go adds repeated units
    (".5s", 0.5),
    ("1.s", 1.0),
    ("5.0s", 5.0),
    ("+5s", 5.0),
    ("-5s", -5.0),
    ("-1m30s", -90.0),
    ("2562047h", 2562047 * 3600.0),  # just inside int64 nanoseconds
]

# (text, a fragment the message must contain)
INVALID = [
    ("", "empty"),
    ("-", "empty"),
    ("+", "empty"),
    ("5", "missing unit"),
    ("1.5", "missing unit"),
    ("-5", "missing unit"),
    ("5x", "expected a number followed by one of"),
    ("5S", "expected a number followed by one of"),
    ("5 s", "expected a number followed by one of"),
    ("h", "expected a number followed by one of"),
    ("ms", "expected a number followed by one of"),
    ("1.2.3s", "expected a number followed by one of"),
    ("1e5s", "expected a number followed by one of"),
    ("1h-2m", "expected a number followed by one of"),
    ("- 5s", "expected a number followed by one of"),
    ("0x10s", "expected a number followed by one of"),
    # Go's duration digits are ASCII only.
    ("\u0663s", "invalid duration"),
    ("\uff15s", "invalid duration"),
    # Go stores durations as int64 nanoseconds (about 292 years).
    ("2562048h", "too large"),
    ("-2562048h", "too large"),
    ("9999999999999999999999s", "too large"),
    ("1" * 400 + "h", "too large"),
]


def _outcome(text):
    """
    :return: what L{parse_duration} makes of C{text}: its value, or the
        message of the L{DurationError} it raised.
    """
    try:
        return parse_duration(text)
    except DurationError as e:
        return "DurationError: {}".format(e)


def _close(first, second):
    """
    :return: whether two durations in seconds are equal but for float
        rounding.
    """
    return math.isclose(first, second, rel_tol=1e-9, abs_tol=1e-15)


class ParseDurationTests(SynchronousTestCase):
    """
    Tests for L{parse_duration}.
    """

    def test_valid(self):
        """
        Every form Go accepts gives its value in seconds.
        """
        wrong = [(text, _outcome(text), seconds) for text, seconds in VALID
                 if not (isinstance(_outcome(text), float)
                         and _close(_outcome(text), seconds))]
        self.assertEqual(wrong, [])

    def test_float(self):
        """
        The result is a float, also for whole numbers of seconds.
        """
        self.assertIsInstance(parse_duration("15s"), float)
        self.assertIsInstance(parse_duration("0"), float)

    def test_invalid(self):
        """
        Malformed durations raise L{DurationError} quoting the input and
        naming the problem.
        """
        wrong = []
        for text, fragment in INVALID:
            outcome = _outcome(text)
            if not (isinstance(outcome, str) and fragment in outcome
                    and repr(text) in outcome):
                wrong.append((text, outcome, fragment))
        self.assertEqual(wrong, [])

    def test_missing_unit_suggests_one(self):
        """
        A bare number, the classic mistake (C{timeout: 15}), gets a message
        suggesting the value with a unit.
        """
        with self.assertRaises(DurationError) as raised:
            parse_duration("15")
        self.assertIn("'15s'", str(raised.exception))

    def test_value_error(self):
        """
        L{DurationError} is a L{ValueError}, so callers may catch either.
        """
        self.assertTrue(issubclass(DurationError, ValueError))

    def test_max(self):
        """
        L{MAX_SECONDS} is Go's largest duration, C{2**63 - 1} nanoseconds.
        """
        self.assertEqual(MAX_SECONDS, (2 ** 63 - 1) / 1e9)


# (seconds, text)
FORMATTED = [
    (0, "0s"),
    (0.0, "0s"),
    (0.001, "1ms"),
    (0.25, "250ms"),
    (0.5, "500ms"),
    (1, "1s"),
    (1.5, "1.5s"),
    (15, "15s"),
    (60, "1m"),
    (90, "1m30s"),
    (900, "15m"),
    (1800, "30m"),
    (3600, "1h"),
    (3601, "1h0m1s"),
    (3723.5, "1h2m3.5s"),
    (5400, "1h30m"),
    (-1.5, "-1.5s"),
    (-90, "-1m30s"),
]

ROUND_TRIP = [
    0.0, 1e-6, 2.5e-5, 0.001, 0.0015, 0.25, 1.0, 2.0, 15.0, 59.5, 60.0, 61.0,
    90.0, 900.0, 1800.0, 3600.0, 3601.0, 3723.5, 86400.0, 1e9, -0.25, -15.0,
    -5400.0,
]


class FormatDurationTests(SynchronousTestCase):
    """
    Tests for L{format_duration}.
    """

    def test_format(self):
        """
        Durations are written in the short Go style.
        """
        self.assertEqual([(seconds, format_duration(seconds)) for seconds, _ in FORMATTED],
                         FORMATTED)

    def test_round_trip(self):
        """
        L{parse_duration} reads back what L{format_duration} writes.
        """
        wrong = [(seconds, format_duration(seconds), _outcome(format_duration(seconds)))
                 for seconds in ROUND_TRIP
                 if not _close(parse_duration(format_duration(seconds)), seconds)]
        self.assertEqual(wrong, [])

    def test_parsed_round_trip(self):
        """
        Formatting a parsed duration and parsing it again gives the same
        value.
        """
        wrong = []
        for text, seconds in VALID:
            if abs(seconds) < 1e-3:
                continue  # below a millisecond, only whole microseconds are kept
            again = parse_duration(format_duration(parse_duration(text)))
            if not _close(again, seconds):
                wrong.append((text, format_duration(parse_duration(text)), again))
        self.assertEqual(wrong, [])
