# -*- test-case-name: tests.model.test_duration,tests.model.test_duration_edges -*-
"""
Go duration strings (C{"15m"}, C{"1h30m"}, C{"500ms"}), as the sealos config
files use them, to and from seconds.
"""

import re

_UNITS = {
    "ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3,
    "s": 1.0, "m": 60.0, "h": 3600.0,
}
# [0-9], not \d: Go accepts ASCII digits only (\d also matches e.g. Arabic-Indic ones).
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
# Go stores durations as int64 nanoseconds: about 292 years.
MAX_SECONDS = (2 ** 63 - 1) / 1e9


class DurationError(ValueError):
    """
    Not a valid duration.
    """


def parse_duration(text):
    """
    :param text: a Go duration such as C{"1h2m3.5s"}; C{"0"} is allowed
        without a unit, like in Go.
    :return: the duration in seconds, as a float (may be negative).
    :raise DurationError: naming what is wrong.
    """
    original = text
    text = text.strip()
    sign = 1.0
    if text[:1] in "+-" and text:
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise DurationError("invalid duration {!r}: empty".format(original))
    total = 0.0
    position = 0
    while position < len(text):
        match = _PART.match(text, position)
        if match is None:
            if re.match(r"[0-9.]+$", text[position:]):
                raise DurationError("invalid duration {!r}: missing unit (use e.g. '{}s')"
                                    .format(original, text[position:]))
            raise DurationError("invalid duration {!r}: expected a number followed by one "
                                "of ns, us, ms, s, m, h".format(original))
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if total > MAX_SECONDS:
        raise DurationError("invalid duration {!r}: too large".format(original))
    return sign * total


def format_duration(seconds):
    """
    :return: C{seconds} as a short Go-style duration, e.g. C{"1m30s"}, C{"250ms"}.
    """
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        millis = seconds * 1000
        return "{}{}ms".format(sign, _trim(millis))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = ""
    if hours:
        text += "{}h".format(int(hours))
    if minutes or (hours and secs):
        text += "{}m".format(int(minutes))
    if secs or not text:
        text += "{}s".format(_trim(secs))
    return sign + text


def _trim(number):
    text = "{:.3f}".format(number).rstrip("0").rstrip(".")
    return text


def jittered(seconds, uniform, spread=0.1):
    """
    Spread a periodic wait so that nodes started together do not stay in
    step.

    :param seconds: the nominal wait.
    :param uniform: a callable returning a number in [0, 1) (C{random.random},
        or a fixed value in tests: 0.5 gives C{seconds} exactly).
    :param spread: the most the wait moves, as a fraction of C{seconds}.
    :return: a wait in C{[seconds * (1 - spread), seconds * (1 + spread))}.
    """
    return seconds * (1.0 + spread * (2.0 * uniform() - 1.0))
