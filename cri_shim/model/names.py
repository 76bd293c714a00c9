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
#: Format 2 keeps each name's scope; format 1 (no scopes) is not read: it
#: could not tell a name pulled for a restricted registry from another.
_FORMAT = 2
#: Registries a scope may name, and the length of each name, at most.
_MAX_SCOPE = 64
_MAX_SCOPE_NAME = 255


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


def _pinned_elsewhere(requested, stored):
    """
    :return: whether C{stored} is not the image C{requested} pins: a name
        pinned by digest only ever maps to that digest.
    """
    return requested.digest is not None and stored.digest != requested.digest


@attr.s(frozen=True, slots=True)
class View:
    """
    An immutable look-up table built from a L{NameMap}.

    Names pulled for a restricted scope (registries that serve only some
    workloads, L{cri_shim.model.rewrite.scope}) are looked up by that scope
    alone and never shown as requested names: the node-wide presentation
    (ImageStatus, ListImages) is the unrestricted scope's.

    :ivar targets: requested name -> stored name, for the unrestricted scope.
    :ivar scoped: C{(requested name, scope)} -> stored name, for the others.
    :ivar tags: stored C{repo:tag} -> the requested C{repo:tag} names.
    :ivar repos: stored repository -> the requested repositories.
    """

    targets = attr.ib(factory=dict)
    scoped = attr.ib(factory=dict)
    tags = attr.ib(factory=dict)
    repos = attr.ib(factory=dict)

    def target(self, requested, scope=()):
        """
        :param requested: a requested name (a string).
        :param scope: the scope the name is looked up for.
        :return: the name the image pulled as C{requested} for C{scope} is
            stored under, or C{None}.
        """
        if not scope:
            return self.targets.get(requested)
        return self.scoped.get((requested, scope))

    def __bool__(self):
        return bool(self.targets or self.scoped)

    def with_name(self, requested, stored):
        """
        :return: this view with one more name, as if C{requested} had been
            pulled as C{stored}; C{self} when it has it already.
        """
        if self.targets.get(requested) == stored:
            return self
        return _build([(reference.parse(requested), reference.parse(stored), ())],
                      View(dict(self.targets), self.scoped, dict(self.tags), dict(self.repos)))

    def present(self, tags, digests):
        """
        Show an image's names as its requested names: each stored tag as
        the tags it was requested by, each C{repo@digest} in the requested
        repositories; names never requested stay.

        :return: C{(tags, digests)}, lists without duplicates.
        """
        return (_unique(name for tag in tags for name in self.requested(tag)),
                _unique(name for item in digests for name in self.requested(item)))

    def requested(self, name):
        """
        :param name: an image name the runtime shows: a tag, or
            C{repo@digest}.
        :return: the names it shows as: the tags it was requested by, or
            the digest in each requested repository; itself when never
            requested.
        """
        repo, at, digest = name.partition("@")
        if at:
            return tuple(requested + at + digest for requested in self.repos.get(repo, (repo,)))
        return self.tags.get(name, (name,))


def _build(entries, view):
    """
    Add C{(requested, stored, scope)} entries (references and a tuple) to
    C{view}'s tables, in place.
    """
    for requested, stored, scope in entries:
        if scope:
            view.scoped[str(requested), scope] = stored_name(stored)
            continue
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
    C{(requested name, scope)} -> stored name, least recently recorded
    first, at most C{limit} of them.  A scope is a tuple of registry names
    (L{cri_shim.model.rewrite.scope}); C{()} is the unrestricted one.  Not
    thread-safe: its owner locks.
    """

    def __init__(self, limit=MAX_NAMES):
        self._limit = limit
        # (requested name, scope) -> (requested ref, stored ref, scope, sequence number)
        self._entries = OrderedDict()
        self._sequence = 0

    def __len__(self):
        return len(self._entries)

    def record(self, requested, stored, scope=()):
        """
        Remember that the image asked for as C{requested} (a reference) for
        C{scope} was pulled as C{stored}.  A pull under its own name drops
        an earlier mapping of that name, and is remembered only when the
        name is another name's stored name (so that both keep showing).

        :return: whether the map changed.
        """
        key = (str(requested), scope)
        self._sequence += 1
        entry = (requested, stored, scope, self._sequence)
        if stored_name(stored) == stored_name(requested):
            target = stored_name(stored)
            kept = any(stored_name(other) == target for name, (_, other, _, _) in
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
        Forget every entry, of any scope, requested as or stored under one
        of C{names}.

        :return: whether the map changed.
        """
        names = set(names)
        gone = [key for key, (_, stored, _, _) in self._entries.items()
                if key[0] in names or stored_name(stored) in names]
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
        gone = [key for key, (_, stored, _, sequence) in self._entries.items()
                if sequence <= mark and stored_name(stored) not in present]
        for key in gone:
            del self._entries[key]
        return len(gone)

    def view(self):
        """
        :return: a new L{View} of the entries.
        """
        return _build((entry[:3] for entry in self._entries.values()), View())

    def dump(self):
        """
        :return: the entries as JSON bytes, least recently recorded first:
            C{[requested, stored, [scope registry, ...]]} each.
        """
        names = [[str(requested), str(stored), list(scope)] for requested, stored, scope, _ in
                 self._entries.values()]
        return json.dumps({"format": _FORMAT, "names": names}, indent=0).encode("utf-8")

    @classmethod
    def load(cls, data, limit=MAX_NAMES):
        """
        :param data: what L{dump} wrote.
        :return: a L{NameMap}.
        :raise ValueError: when C{data} is not such a document, or names a
            digest-pinned image stored under another digest.
        """
        document = json.loads(data.decode("utf-8"))
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise ValueError("not a names document of format {}".format(_FORMAT))
        names = document.get("names")
        if not isinstance(names, list):
            raise ValueError("'names' is not a list")
        loaded = cls(limit)
        for index, item in enumerate(names):
            requested, stored, scope = _entry(item, "names[{}]".format(index))
            loaded._entries.pop((str(requested), scope), None)
            loaded._entries[str(requested), scope] = (requested, stored, scope, 0)
        while len(loaded._entries) > limit:
            loaded._entries.popitem(last=False)
        return loaded


def _entry(item, where):
    """
    :return: C{(requested ref, stored ref, scope)} read from one dumped
        entry.
    :raise ValueError: naming C{where} when it is not one.
    """
    if not (isinstance(item, list) and len(item) == 3 and
            all(isinstance(name, str) for name in item[:2])):
        raise ValueError("{} is not [requested, stored, scope]".format(where))
    scope = item[2]
    if not (isinstance(scope, list) and len(scope) <= _MAX_SCOPE and
            all(isinstance(name, str) and 0 < len(name) <= _MAX_SCOPE_NAME for name in scope)
            and scope == sorted(set(scope))):
        raise ValueError("{}: the scope is not a sorted list of registry names".format(where))
    try:
        requested, stored = (reference.parse(name) for name in item[:2])
    except reference.InvalidReference as e:
        raise ValueError("{}: {}".format(where, e))
    if _pinned_elsewhere(requested, stored):
        raise ValueError("{}: {} is pinned by digest but stored as {}".format(
            where, requested, stored))
    return requested, stored, tuple(scope)
