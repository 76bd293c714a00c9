"""
critest (cri-tools v1.37.0) on containerd 1.6 and 2.4, directly and through
the shim: see L{tests.conformance.critest}.

Each run takes minutes, so each (runtime, mode) is run once per process and
shared by the tests that read it.  What is asserted today:

- the run produced a report (the suite ran at all);
- relay == direct, spec for spec: the shim relaying every call changes no
  outcome;
- rewrite == direct, spec for spec: with every pull moved to the shim's
  registry, transparent names (C{names: requested}) make the node look as if
  each image had been pulled under the name asked for, so creating a
  container by that name and the image tests' C{repo_tags} pass as directly.

Every run prints its line of the table and its failures; C{python -m
tests.conformance} runs all six and prints the whole table.
"""

import os

from twisted.trial import unittest

from tests.conformance import critest

_results = {}


def _run(runtime, mode):
    key = (runtime, mode)
    if key not in _results:
        report_dir = os.path.join(os.getcwd(), "conformance-reports")
        result = critest.run(runtime, mode, report_dir)
        _results[key] = result
        print(f"\ncritest {runtime} ({result.version}) {mode}: passed/failed/skipped "
              f"{result.summary()} in {result.duration:.0f} s (exit {result.status}; "
              f"log {result.log})")
        for line in critest.failure_reasons(result):
            print("  " + line)
    return _results[key]


def _differences(expected, got):
    """
    :return: lines naming each spec whose state differs.
    """
    lines = []
    for name in sorted(set(expected.states) | set(got.states)):
        a, b = expected.states.get(name), got.states.get(name)
        if a != b:
            reason = got.failures.get(name) or expected.failures.get(name) or ""
            lines.append(f"{name}: {expected.mode} {a}, {got.mode} {b} {reason[:300]}")
    return lines


class _CritestMixin:
    """
    The tests for one runtime: set L{runtime}.
    """

    runtime = None

    def setUp(self):
        reason = critest.skip_reason(critest.RUNTIMES[self.runtime])
        if reason is not None:
            raise unittest.SkipTest(reason)

    def assertSameOutcomes(self, expected, got):
        differences = _differences(expected, got)
        if differences:
            self.fail("{} specs differ between {} and {}:\n{}".format(
                len(differences), expected.mode, got.mode, "\n".join(differences)))

    def test_direct(self):
        """
        critest runs directly against containerd and reports its specs.
        """
        direct = _run(self.runtime, "direct")
        self.assertGreater(direct.passed, 0, direct.log)

    def test_relay(self):
        """
        Through the shim, with no registry of the shim's holding the test
        images (every pull relayed unchanged), every spec has the outcome it
        has directly.
        """
        self.assertSameOutcomes(_run(self.runtime, "direct"), _run(self.runtime, "relay"))

    def test_rewrite_runs(self):
        """
        Through the shim, with its registry holding every test image (every
        pull rewritten), the suite runs the same specs.
        """
        direct, rewrite = _run(self.runtime, "direct"), _run(self.runtime, "rewrite")
        self.assertGreater(len(rewrite.states), 0, rewrite.log)
        self.assertEqual(sorted(direct.states), sorted(rewrite.states))

    def test_rewrite(self):
        """
        Through the shim, rewriting every pull, every spec has the outcome it
        has directly.
        """
        self.assertSameOutcomes(_run(self.runtime, "direct"), _run(self.runtime, "rewrite"))


class Containerd16Tests(_CritestMixin, unittest.SynchronousTestCase):
    runtime = "containerd 1.6"


class Containerd24Tests(_CritestMixin, unittest.SynchronousTestCase):
    runtime = "containerd 2.4"
