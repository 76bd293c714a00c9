"""
Tests for L{cri_shim.model.names}: plain tables.
"""

import json

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model.names import NameMap, View, parse_requested
from cri_shim.model.reference import InvalidReference, parse

HUB = "sealos.hub:5000"
DIGEST = "sha256:" + "a" * 64


def _map(*pairs, limit=16):
    names = NameMap(limit)
    for requested, stored in pairs:
        names.record(parse(requested).with_default_tag(), parse(stored))
    return names


class ParseRequestedTests(SynchronousTestCase):
    def test_table(self):
        """
        Names get the default tag; IDs and what does not parse are C{None}.
        """
        for name, expected in [
                ("nginx", "docker.io/library/nginx:latest"),
                ("quay.io/a/b@" + DIGEST, "quay.io/a/b@" + DIGEST),
                (DIGEST, None), ("a" * 64, None), ("Not Valid", None), ("", None)]:
            ref = parse_requested(name)
            self.assertEqual(str(ref) if ref is not None else None, expected, name)


class PresentTests(SynchronousTestCase):
    def test_tags_and_digests(self):
        """
        Stored tags show as the tags they were requested by, digests in the
        requested repositories; names never requested stay.
        """
        view = _map(("nginx", HUB + "/library/nginx:latest"),
                    ("docker.io/library/nginx:stable", HUB + "/library/nginx:latest")).view()
        shown = view.present(
            [HUB + "/library/nginx:latest", "quay.io/x:1"],
            [HUB + "/library/nginx@" + DIGEST, "quay.io/x@" + DIGEST])
        self.assertEqual(shown, (
            ["docker.io/library/nginx:latest", "docker.io/library/nginx:stable", "quay.io/x:1"],
            ["docker.io/library/nginx@" + DIGEST, "quay.io/x@" + DIGEST]))

    def test_by_digest(self):
        """
        An image requested by digest is kept under the digest form alone
        (runtimes drop the tag of C{name:tag@digest}) and shows in the
        requested repository; its tags are left alone.
        """
        names = _map(("nginx:1@" + DIGEST, HUB + "/library/nginx:1@" + DIGEST))
        view = names.view()
        self.assertEqual(view.targets, {"docker.io/library/nginx:1@" + DIGEST:
                                        HUB + "/library/nginx@" + DIGEST})
        self.assertEqual(view.present([HUB + "/library/nginx:2"],
                                      [HUB + "/library/nginx@" + DIGEST]),
                         ([HUB + "/library/nginx:2"], ["docker.io/library/nginx@" + DIGEST]))

    def test_with_name(self):
        """
        A view with one more name shows it; the original view is unchanged.
        """
        view = View()
        more = view.with_name("docker.io/library/nginx:1", HUB + "/library/nginx:1")
        self.assertEqual(more.present([HUB + "/library/nginx:1"], []),
                         (["docker.io/library/nginx:1"], []))
        self.assertEqual(view.targets, {})
        self.assertIs(more.with_name("docker.io/library/nginx:1", HUB + "/library/nginx:1"),
                      more)


class NameMapTests(SynchronousTestCase):
    def test_record_changes(self):
        """
        Recording reports a change only when the stored name changes.
        """
        names = NameMap()
        nginx, hub, other = (parse("docker.io/library/nginx:1"), parse(HUB + "/library/nginx:1"),
                             parse("mirror.example/library/nginx:1"))
        self.assertEqual([names.record(nginx, hub), names.record(nginx, hub),
                          names.record(nginx, other)], [True, False, True])

    def test_pull_under_own_name(self):
        """
        A pull under its own name drops the earlier mapping of that name;
        it is remembered only when it is another name's stored name.
        """
        names = _map(("nginx:1", HUB + "/library/nginx:1"))
        self.assertTrue(names.record(parse("nginx:1"), parse("nginx:1")))
        self.assertEqual(names.view().targets, {})
        self.assertFalse(names.record(parse("quay.io/x:1"), parse("quay.io/x:1")))
        names = _map(("nginx:1", HUB + "/library/nginx:1"),
                     (HUB + "/library/nginx:1", HUB + "/library/nginx:1"))
        self.assertEqual(names.view().present([HUB + "/library/nginx:1"], []),
                         (["docker.io/library/nginx:1", HUB + "/library/nginx:1"], []))

    def test_bounded(self):
        """
        The least recently recorded names go first.
        """
        names = _map(("a:1", HUB + "/a:1"), ("b:1", HUB + "/b:1"), ("a:1", HUB + "/a:1"),
                     ("c:1", HUB + "/c:1"), limit=2)
        self.assertEqual(sorted(names.view().targets), ["docker.io/library/a:1",
                                                        "docker.io/library/c:1"])

    def test_forget(self):
        """
        Forgetting a name drops the entries requested as it or stored under
        it.
        """
        names = _map(("a:1", HUB + "/a:1"), ("b:1", HUB + "/b:1"), ("c:1", HUB + "/c:1"))
        self.assertTrue(names.forget(["docker.io/library/a:1", HUB + "/b:1"]))
        self.assertFalse(names.forget(["docker.io/library/a:1"]))
        self.assertEqual(list(names.view().targets), ["docker.io/library/c:1"])

    def test_reconcile(self):
        """
        Entries whose stored name is gone are dropped, except those
        recorded after the mark.
        """
        names = _map(("a:1", HUB + "/a:1"), ("b:1", HUB + "/b:1"))
        mark = names.mark()
        names.record(parse("c:1"), parse(HUB + "/c:1"))
        self.assertEqual(names.reconcile({HUB + "/b:1"}, mark), 1)
        self.assertEqual(sorted(names.view().targets), ["docker.io/library/b:1",
                                                        "docker.io/library/c:1"])

    def test_dump_load(self):
        """
        What is dumped loads back, in the same order, within the limit.
        """
        names = _map(("a:1", HUB + "/a:1"), ("b@" + DIGEST, HUB + "/b@" + DIGEST))
        data = names.dump()
        self.assertEqual(json.loads(data.decode("utf-8")), {"format": 2, "names": [
            ["docker.io/library/a:1", HUB + "/a:1", []],
            ["docker.io/library/b@" + DIGEST, HUB + "/b@" + DIGEST, []]]})
        self.assertEqual(NameMap.load(data).dump(), data)
        self.assertEqual(list(NameMap.load(data, limit=1).view().targets),
                         ["docker.io/library/b@" + DIGEST])

    def test_load_refuses(self):
        """
        Anything but a dumped document is refused with C{ValueError}.
        """
        for data in [b"", b"\xff", b"[]", b'{"format": 3, "names": []}',
                     b'{"format": 1, "names": [["a", "b"]]}',
                     b'{"format": 2, "names": {}}', b'{"format": 2, "names": [["a", "b"]]}',
                     b'{"format": 2, "names": [["a", 1, []]]}',
                     b'{"format": 2, "names": [["a", "Not Valid", []]]}',
                     b'{"format": 2, "names": [["a", "b", "c"]]}',
                     b'{"format": 2, "names": [["a", "b", [1]]]}',
                     b'{"format": 2, "names": [["a", "b", [""]]]}',
                     b'{"format": 2, "names": [["a", "b", ["z", "y"]]]}',
                     b'{"format": 2, "names": [["a", "b", ["y", "y"]]]}',
                     b'{"format": 2, "names": [["a", "b", ["' + b"x" * 256 + b'"]]]}',
                     b'{"format": 2, "names": [["a", "b", ' +
                     json.dumps(["r%02d" % i for i in range(65)]).encode() + b']]}']:
            self.assertRaises(ValueError, NameMap.load, data)
        # The bounds themselves are fine.
        NameMap.load(b'{"format": 2, "names": [["a", "b", ' + json.dumps(
            ["r%02d" % i for i in range(62)] + ["x" * 255, "y"]).encode() + b']]}')

    def test_load_messages(self):
        """
        Each refusal names the entry and what is wrong with it.
        """
        for names, message in [
                ([["a", "b"]], "names[0] is not [requested, stored, scope]"),
                ([["a", "b", []], ["a", "b", ["y", "x"]]],
                 "names[1]: the scope is not a sorted list of registry names"),
                ([["a", "Not Valid", []]], "names[0]: {}".format(_invalid("Not Valid")))]:
            with self.assertRaises(ValueError) as caught:
                NameMap.load(json.dumps({"format": 2, "names": names}).encode())
            self.assertEqual(str(caught.exception), message)

    def test_load_refuses_pinned_elsewhere(self):
        """
        A name pinned by digest only ever maps to that digest: an entry
        mapping it to another digest, or to a tag, refuses the document,
        naming the entry.
        """
        other = "sha256:" + "b" * 64
        for stored in [HUB + "/nginx@" + other, HUB + "/nginx:1"]:
            data = json.dumps({"format": 2, "names": [
                ["a:1", HUB + "/a:1", []], ["nginx@" + DIGEST, stored, []]]}).encode()
            with self.assertRaises(ValueError) as caught:
                NameMap.load(data)
            self.assertEqual(str(caught.exception), "names[1]: {} is pinned by digest but stored "
                             "as {}".format(parse("nginx@" + DIGEST), parse(stored)))
        loaded = NameMap.load(json.dumps({"format": 2, "names": [
            ["nginx:1@" + DIGEST, HUB + "/nginx@" + DIGEST, []]]}).encode())
        self.assertEqual(loaded.view().targets, {"docker.io/library/nginx:1@" + DIGEST:
                                                 HUB + "/nginx@" + DIGEST})

    def test_scopes(self):
        """
        A name pulled for a restricted scope is looked up by that scope
        alone and never shown as a requested name; the same name for
        another scope is another entry; forgetting a name forgets it in
        every scope; dumped and loaded, scopes are kept.
        """
        names = NameMap()
        nginx = parse("nginx:1").with_default_tag()
        private, public = parse("team-a.example/library/nginx:1"), parse(HUB + "/library/nginx:1")
        self.assertTrue(names.record(nginx, private, ("team-a.example",)))
        self.assertTrue(names.record(nginx, public))
        first = names.view()
        self.assertFalse(names.record(nginx, private, ("team-a.example",)))
        view = names.view()
        self.assertEqual((first.targets, first.scoped), (view.targets, view.scoped))
        self.assertEqual(
            [view.target(str(nginx)), view.target(str(nginx), ("team-a.example",)),
             view.target(str(nginx), ("team-b.example",))],
            [str(public), str(private), None])
        self.assertEqual(view.present([str(private), str(public)], []),
                         ([str(private), str(nginx)], []))
        loaded = NameMap.load(names.dump())
        self.assertEqual(loaded.dump(), names.dump())
        self.assertEqual(loaded.view().scoped, {(str(nginx), ("team-a.example",)): str(private)})
        self.assertTrue(bool(view))
        self.assertTrue(names.forget([str(nginx)]))
        self.assertFalse(bool(names.view()))
        only_scoped = NameMap()
        only_scoped.record(nginx, private, ("team-a.example",))
        self.assertTrue(bool(only_scoped.view()))


def _invalid(name):
    """
    :return: the message C{parse} refuses C{name} with.
    """
    try:
        parse(name)
    except InvalidReference as e:
        return str(e)
    raise AssertionError(name)
