# -*- test-case-name: tests.model.test_selector -*-
"""
Which workloads a registry serves: the pod a pull is for (L{Pod}, from
the request's C{sandbox_config}), a registry entry's C{namespaces} and
C{podSelector} (L{Selector}, Kubernetes label-selector semantics), how the
two are read from a config document and how they are matched.  Pure.
"""

import re

import attr

from cri_shim.model.reader import kind

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_DNS_SUBDOMAIN = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_LABEL_NAME = re.compile(r"(?=.{1,63}\Z)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
_LABEL_VALUE = re.compile(r"(?=.{0,63}\Z)([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")
#: The operators of C{matchExpressions}, and whether each takes C{values}.
OPERATORS = {"In": True, "NotIn": True, "Exists": False, "DoesNotExist": False}
_SELECTOR_KEYS = ("matchLabels", "matchExpressions")
_EXPRESSION_KEYS = ("key", "operator", "values")


@attr.s(frozen=True, slots=True)
class Pod:
    """
    The pod a pull is for, as kubelet describes it in C{sandbox_config}.

    :ivar labels: a frozenset of C{(key, value)} pairs (hashable, so that a
        pod can key a cache or a single-flight lookup).
    """

    name = attr.ib()
    namespace = attr.ib()
    uid = attr.ib(default="")
    labels = attr.ib(default=frozenset(), converter=lambda items: frozenset(
        items.items() if isinstance(items, dict) else items))

    @property
    def label_map(self):
        """
        :return: the labels as a dict.
        """
        return dict(self.labels)


@attr.s(frozen=True, slots=True)
class Requirement:
    """
    One C{matchExpressions} entry: C{key}, an operator of L{OPERATORS}, and
    C{values} (a frozenset).
    """

    key = attr.ib()
    operator = attr.ib()
    values = attr.ib(default=frozenset())

    def matches(self, labels):
        """
        :param labels: a dict of the pod's labels.
        """
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels

    def describe(self):
        """
        :return: the requirement as C{kubectl} writes it (C{tier in (gpu)}).
        """
        if self.operator in ("Exists", "DoesNotExist"):
            return ("!" if self.operator == "DoesNotExist" else "") + self.key
        return "{} {} ({})".format(self.key, self.operator.lower(),
                                   ",".join(sorted(self.values)))


@attr.s(frozen=True, slots=True)
class Selector:
    """
    A C{podSelector}: every C{matchLabels} pair and every requirement must
    hold.  An empty selector matches every pod (but not a pull for no pod).
    """

    match_labels = attr.ib(default=())   # sorted (key, value) pairs
    requirements = attr.ib(default=())   # Requirements

    def matches(self, labels):
        """
        :param labels: a dict of the pod's labels.
        """
        return (all(labels.get(key) == value for key, value in self.match_labels)
                and all(requirement.matches(labels) for requirement in self.requirements))

    def describe(self):
        """
        :return: the selector as C{kubectl} writes one (C{tier=gpu,!spot}).
        """
        parts = ["{}={}".format(key, value) for key, value in self.match_labels]
        parts += [requirement.describe() for requirement in self.requirements]
        return ",".join(parts) or "(every pod)"


def admits(namespaces, selector, pod):
    """
    Whether a registry restricted to C{namespaces} and C{selector} serves
    a pull for C{pod}.

    :param namespaces: a tuple of namespaces; empty means any.
    :param selector: a L{Selector}, or C{None} for any labels.
    :param pod: a L{Pod}, or C{None} for a pull no pod asked for.
    """
    if not namespaces and selector is None:
        return True
    if pod is None:
        return False
    if namespaces and pod.namespace not in namespaces:
        return False
    return selector is None or selector.matches(pod.label_map)


def read_namespaces(reader, section, name, key):
    """
    Read a registry's C{namespaces}: a list of namespace names (one name
    alone is taken as a list of one).  Written with nothing in it (C{[]},
    or no value: its items commented out) it is refused, never read as
    "every namespace".

    :param section: the registry entry, by canonical key names.
    :param name: C{"namespaces"}.
    :return: a tuple of names; empty when absent.
    """
    value = section.get(name)
    if value is None:
        if name in section:
            reader.problem(key, "empty (no namespace is listed): no pod could use this "
                           "registry; leave the key out to serve every namespace")
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        reader.problem(key, "expected a list of namespaces, got {}".format(kind(value)))
        return ()
    if not value:
        reader.problem(key, "empty list: no pod could use this registry; leave the key out "
                       "to serve every namespace")
        return ()
    names = []
    for index, item in enumerate(value):
        where = "{}[{}]".format(key, index)
        if not isinstance(item, str) or not _DNS_LABEL.match(item.strip()):
            reader.problem(where, "expected a namespace name (a DNS label such as team-a), "
                           "got {}".format(repr(item) if isinstance(item, str) else kind(item)))
            continue
        names.append(item.strip())
    return tuple(sorted(set(names)))


def read_selector(reader, section, name, key):
    """
    Read a registry's C{podSelector}: C{matchLabels} (label: value) and
    C{matchExpressions} (C{{key, operator, values}}), as in Kubernetes: an
    empty selector (C{{}}) selects every pod.  The selector or either of
    its keys written with no value (its lines commented out) is refused,
    never read as empty.

    :param section: the registry entry, by canonical key names.
    :param name: C{"podSelector"}.
    :return: a L{Selector}, or C{None} when absent.
    """
    value = section.get(name)
    if value is None:
        if name in section:
            reader.problem(key, "no value: give matchLabels or matchExpressions ({} selects "
                           "every pod), or leave the key out to serve every pod")
        return None
    section = reader.mapping(value, key, _SELECTOR_KEYS)
    if section is None:
        return None
    for part in _SELECTOR_KEYS:
        if part in section and section[part] is None:
            reader.problem(key + "." + part, "no value: give it one, or leave the key out")
    labels = []
    raw_labels = section.get("matchLabels") or {}
    if not isinstance(raw_labels, dict):
        reader.problem(key + ".matchLabels", "expected a mapping of label: value, got {}".format(
            kind(raw_labels)))
    else:
        for name, item in raw_labels.items():
            where = "{}.matchLabels.{}".format(key, name)
            if _label_key_problem(reader, name, where):
                continue
            if not isinstance(item, str):
                reader.problem(where, "expected a string (quote it), got {}".format(kind(item)))
            elif not _LABEL_VALUE.match(item):
                reader.problem(where, "{!r} is not a valid label value".format(item))
            else:
                labels.append((name, item))
    requirements = _expressions(reader, section.get("matchExpressions"),
                                key + ".matchExpressions")
    return Selector(tuple(sorted(labels)), tuple(requirements))


def _expressions(reader, value, key):
    if value is None:
        return []
    if not isinstance(value, list):
        reader.problem(key, "expected a list, got {}".format(kind(value)))
        return []
    requirements = []
    for index, item in enumerate(value):
        where = "{}[{}]".format(key, index)
        section = reader.mapping(item, where, _EXPRESSION_KEYS)
        if section is None:
            continue
        name, operator, values = (section.get(field) for field in _EXPRESSION_KEYS)
        if name is None:
            reader.problem(where + ".key", "missing")
            continue
        if _label_key_problem(reader, name, where + ".key"):
            continue
        if operator not in OPERATORS:
            reader.problem(where + ".operator", "expected one of {}, got {}".format(
                ", ".join(OPERATORS), repr(operator) if isinstance(operator, str)
                else kind(operator)))
            continue
        if not OPERATORS[operator]:
            if values:
                reader.problem(where + ".values", "must be empty for {}".format(operator))
                continue
            requirements.append(Requirement(name, operator))
            continue
        if (not isinstance(values, list) or not values
                or not all(isinstance(v, str) and _LABEL_VALUE.match(v) for v in values)):
            reader.problem(where + ".values", "{} needs a non-empty list of label values "
                           "(strings)".format(operator))
            continue
        requirements.append(Requirement(name, operator, frozenset(values)))
    return requirements


def _label_key_problem(reader, name, where):
    """
    Report C{name} if it is not a label key (C{[prefix/]name}).

    :return: whether it was reported.
    """
    if isinstance(name, str):
        prefix, slash, rest = name.rpartition("/")
        if _LABEL_NAME.match(rest) and (not slash or _DNS_SUBDOMAIN.match(prefix)):
            return False
    reader.problem(where, "{} is not a valid label key".format(
        repr(name) if isinstance(name, str) else kind(name)))
    return True
