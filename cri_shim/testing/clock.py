# -*- test-case-name: tests.sync.test_ticker -*-
"""
Random sources for the jitter of periodic timers, fixed for tests.
"""


def no_jitter():
    """
    The middle of [0, 1): every jittered wait is its nominal value.
    """
    return 0.5


class Sequence:
    """
    A random source returning C{values} in turn, then the last one forever.
    """

    def __init__(self, *values):
        self._values = list(values)

    def __call__(self):
        if len(self._values) > 1:
            return self._values.pop(0)
        return self._values[0]
