# -*- test-case-name: tests.model.test_names -*-
"""
Requested names: which name each image pulled through the shim was asked
for, against the name the runtime stores it under, and how the runtime's
images look when shown under the names asked for.  Pure;
L{cri_shim.serve.name_store} keeps the map in a file and shares its
L{View} with the worker threads.
"""

import json
from collections import OrderedDict

import attr

from cri_shim.model import reference

#: Names remembered; the least recently pulled are forgotten first.
MAX_NAMES = 1024
_FORMAT = 1


def parse_requested(name):
    """
    :return: the L{reference.Reference} a client asked for, with the default
        tag made explicit as the runtime would, or C{None} for names the
        shim relays as they are (image IDs, and what does not parse: the
        runtime gives its own answer).
    """
    if not name or reference.is_image_id(name):
        return None
    try:
        return reference.parse(name).with_default_tag()
    except reference.InvalidReference:
        return None


def stored_name(ref):
    """
    :return: the name the runtime keeps C{ref} under: with a digest, the
        digest form alone (runtimes drop the tag of C{name:tag@digest}).
    """
    return str(attr.evolve(ref, tag=None) if ref.digest else ref)


@attr.s(frozen=True, slots=True)
class View:
    """
    An immutable look-up table built from a L{NameMap}.

    :ivar targets: requested name -> stored name.
    :ivar tags: stored C{repo:tag} -> the requested C{repo:tag} names.
    :ivar repos: stored repository -> the requested repositories.
    """

    targets = attr.ib(factory=dict)
    tags = attr.ib(factory=dict)
    repos = attr.ib(factory=dict)

    def with_name(self, requested, stored):
        """
        :return: this view with one more name, as if C{requested} had been
            pulled as C{stored}; C{self} when it has it already.
        """
        if self.targets.get(requested) == stored:
            return self
        return _build([(reference.parse(requested), reference.parse(stored))],
                      View(dict(self.targets), dict(self.tags), dict(self.repos)))

    def present(self, tags, digests):
        """
        Show an image's names as its requested names: each stored tag as
        the tags it was requested by, each C{repo@digest} in the requested
        repositories; names never requested stay.

        :return: C{(tags, digests)}, lists without duplicates.
        """
        shown_tags = _unique(name for tag in tags for name in self.tags.get(tag, (tag,)))
        shown_digests = []
        for item in digests:
            repo, at, digest = item.partition("@")
            shown_digests.extend(name + at + digest for name in self.repos.get(repo, (repo,)))
        return shown_tags, _unique(shown_digests)


def _build(pairs, view):
    """
    Add C{(requested, stored)} reference pairs to C{view}'s tables, in place.
    """
    for requested, stored in pairs:
        view.targets[str(requested)] = stored_name(stored)
        if requested.digest is None and stored.digest is None:
            _append(view.tags, str(stored), str(requested))
        _append(view.repos, stored.name, requested.name)
    return view


def _append(table, key, value):
    values = table.get(key, ())
    if value not in values:
        table[key] = values + (value,)


def _unique(names):
    seen = set()
    return [name for name in names if not (name in seen or seen.add(name))]


class NameMap:
    """
    Requested name -> stored name, least recently recorded first, at most
    C{limit} of them.  Not thread-safe: its owner locks.
    """

    def __init__(self, limit=MAX_NAMES):
        self._limit = limit
        # requested name -> (requested ref, stored ref, sequence number)
        self._entries = OrderedDict()
        self._sequence = 0

    def __len__(self):
        return len(self._entries)

    def record(self, requested, stored):
        """
        Remember that the image asked for as C{requested} (a reference) was
        pulled as C{stored}.  A pull under its own name drops an earlier
        mapping of that name, and is remembered only when the name is
        another name's stored name (so that both keep showing).

        :return: whether the map changed.
        """
        key = str(requested)
        self._sequence += 1
        entry = (requested, stored, self._sequence)
        if stored_name(stored) == stored_name(requested):
            target = stored_name(stored)
            kept = any(stored_name(other) == target for name, (_, other, _) in
                       self._entries.items() if name != key)
            if not kept:
                return self._entries.pop(key, None) is not None
        previous = self._entries.pop(key, None)
        self._entries[key] = entry
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)
        return previous is None or stored_name(previous[1]) != stored_name(stored)

    def forget(self, names):
        """
        Forget every entry requested as, or stored under, one of C{names}.

        :return: whether the map changed.
        """
        names = set(names)
        gone = [key for key, (_, stored, _) in self._entries.items()
                if key in names or stored_name(stored) in names]
        for key in gone:
            del self._entries[key]
        return bool(gone)

    def mark(self):
        """
        :return: a mark for L{reconcile}: entries recorded after it are kept.
        """
        return self._sequence

    def reconcile(self, present, mark):
        """
        Forget the entries recorded up to C{mark} whose stored name is not
        among C{present} (the runtime's image names).

        :return: how many were forgotten.
        """
        gone = [key for key, (_, stored, sequence) in self._entries.items()
                if sequence <= mark and stored_name(stored) not in present]
        for key in gone:
            del self._entries[key]
        return len(gone)

    def view(self):
        """
        :return: a new L{View} of the entries.
        """
        return _build(((requested, stored) for requested, stored, _ in self._entries.values()),
                      View())

    def dump(self):
        """
        :return: the entries as JSON bytes, least recently recorded first.
        """
        names = [[str(requested), str(stored)] for requested, stored, _ in
                 self._entries.values()]
        return json.dumps({"format": _FORMAT, "names": names}, indent=0).encode("utf-8")

    @classmethod
    def load(cls, data, limit=MAX_NAMES):
        """
        :param data: what L{dump} wrote.
        :return: a L{NameMap}.
        :raise ValueError: when C{data} is not such a document.
        """
        document = json.loads(data.decode("utf-8"))
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise ValueError("not a names document of format {}".format(_FORMAT))
        names = document.get("names")
        if not isinstance(names, list):
            raise ValueError("'names' is not a list")
        loaded = cls(limit)
        for index, pair in enumerate(names):
            if not (isinstance(pair, list) and len(pair) == 2
                    and all(isinstance(name, str) for name in pair)):
                raise ValueError("names[{}] is not a pair of names".format(index))
            try:
                requested, stored = (reference.parse(name) for name in pair)
            except reference.InvalidReference as e:
                raise ValueError("names[{}]: {}".format(index, e))
            loaded._entries.pop(str(requested), None)
            loaded._entries[str(requested)] = (requested, stored, 0)
        while len(loaded._entries) > limit:
            loaded._entries.popitem(last=False)
        return loaded
