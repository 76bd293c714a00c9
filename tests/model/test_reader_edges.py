"""
Edge cases of L{cri_shim.model.reader} found by mutation testing (make
mutate): keys after an odd one, repeated keys, the exact words of problems
and notices, and where a YAML error is.
"""

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model.config import MAX_PRIORITY, ConfigError, Notice
from cri_shim.model.reader import Reader, kind, parse_yaml


class MappingTests(SynchronousTestCase):
    """
    L{Reader.mapping}.
    """

    def test_after_an_odd_key(self):
        """
        A key that is not a string is ignored with a warning; the keys after
        it are still read.
        """
        reader = Reader()
        self.assertEqual(reader.mapping({1: "x", "Address": "a"}, "k", ("address",)),
                         {"address": "a"})
        self.assertEqual(reader.notices, [Notice("warn", "ignoring unknown key k.1")])

    def test_repeated_key(self):
        """
        A key given twice (in any case) takes the last value, with a warning.
        """
        reader = Reader()
        self.assertEqual(reader.mapping({"address": "a", "ADDRESS": "b"}, "k", ("address",)),
                         {"address": "b"})
        self.assertEqual(reader.notices, [
            Notice("warn", "k.address is given more than once; the last one is used")])


class ProblemWordsTests(SynchronousTestCase):
    """
    What the reader says about values of the wrong kind.
    """

    def test_words(self):
        """
        Each problem names the key, what was expected and what was given,
        a long value shown by its first 37 characters.
        """
        reader = Reader()
        reader.mapping(1.5, "m", ())
        reader.duration({"t": True}, "t", "t", 5)
        reader.boolean({"b": "x" * 38}, "b", "b")
        reader.boolean({"b": "x" * 39}, "b", "c")
        self.assertEqual(reader.problems, [
            "m: expected a mapping, got a number",
            "t: expected a duration such as '15s' or '5m', got a boolean",
            "b: expected true or false, got '{}'".format("x" * 38),
            "c: expected true or false, got '{}...".format("x" * 36),
        ])

    def test_kinds(self):
        """
        Values are named by their YAML kind.
        """
        self.assertEqual([kind(value) for value in (None, True, 1, 1.5, "s", [], {})],
                         ["nothing", "a boolean", "a number", "a number", "a string", "a list",
                          "a mapping"])

    def test_priority_at_most(self):
        """
        The highest priority is taken as it is, without a warning.
        """
        reader = Reader()
        self.assertEqual(reader.priority({"p": MAX_PRIORITY}, "p", "p", 7), MAX_PRIORITY)
        self.assertEqual(reader.notices, [])


class YamlErrorTests(SynchronousTestCase):
    """
    L{parse_yaml}'s errors: the problem and where, never the line itself.
    """

    def message(self, text):
        return str(self.assertRaises(ConfigError, parse_yaml, text, "f.yaml"))

    def test_position(self):
        """
        A syntax error is placed by line and column, both counted from 1.
        """
        self.assertEqual(self.message(b"x: 1\na: b: c\n"),
                         "f.yaml: invalid YAML: mapping values are not allowed here "
                         "(line 2, column 5)")

    def test_without_position(self):
        """
        An error PyYAML gives no problem mark for is said on one line.
        """
        self.assertEqual(self.message(b"x: 1\na: \x07\n"),
                         'f.yaml: invalid YAML: unacceptable character #x0007: special '
                         'characters are not allowed in "<unicode string>", position 8')
