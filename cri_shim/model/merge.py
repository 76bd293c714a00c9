# -*- test-case-name: tests.model.test_merge,tests.model.test_merge_edges -*-
"""
The cluster-wide settings (the ConfigMap's C{registries.yaml}, in the Go
shim's schema) merged into the local config document.  Pure.

The Go shim's rules, with its bugs fixed: C{offlinePriority} is merged; a
key absent from the ConfigMap leaves the local value alone (the Go shim
empties the registry list and resets C{reloadInterval}); passwords are taken
verbatim; credentials belong to an address (a ConfigMap that moves
C{sealos.address} without sending C{sealos.auth} drops the local login
rather than sending it to the new address).  Keys the shim does not know,
in the file or in a registry entry kept from it, survive.
"""

import copy

import yaml

from cri_shim.model import selector
from cri_shim.model.address import InvalidRegistryAddress, parse_registry_address
from cri_shim.model.config import ConfigError, Notice
from cri_shim.model.reader import Reader, parse_yaml

_TOP = ("version", "sealos", "registries", "offlinePriority", "reloadInterval", "force",
        "debug", "timeout", "cache")
_REGISTRY = ("address", "auth", "priority", "mirrorOf", "namespaces", "podSelector",
             "insecureSkipVerify", "caFile", "certFile", "keyFile")
_CACHE = ("imageCacheSize", "imageCacheTTL", "negativeCacheTTL", "statsLogInterval",
          "disableStats")
# Registry keys the ConfigMap decides whenever it lists a registry.
_OWNED = ("address", "auth", "priority")
# Registry keys only the node's own file sets: from the ConfigMap they could
# make every node present its root-only client certificate to any host, or
# stop verifying TLS (issue 12, #4).
_NODE_LOCAL = ("insecureSkipVerify", "caFile", "certFile", "keyFile")


def read_cluster_settings(text, source="registries.yaml"):
    """
    Parse and check the ConfigMap's document.

    :return: C{(settings, notices)}: settings is a dict of the keys present,
        by canonical name, values checked for type.
    :raise ConfigError: naming every problem, each prefixed with C{source}.
    """
    document = parse_yaml(text, source)
    reader = Reader()
    top = reader.mapping(document, "", _TOP)
    settings = {}
    if top is not None:
        settings = _read(reader, top)
    if reader.problems:
        raise ConfigError(["{}: {}".format(source, problem) for problem in reader.problems])
    return settings, reader.notices


def _read(reader, top):
    settings = {}
    sealos = reader.mapping(top.get("sealos"), "sealos", ("address", "auth"))
    if sealos:
        address = reader.string(sealos, "address", "sealos.address")
        if address:
            settings["address"] = address
        auth = _auth(reader, sealos.get("auth"), "sealos.auth")
        if auth is not None:
            settings["auth"] = auth
    if "registries" in top:
        settings["registries"] = _registries(reader, top["registries"])
    for name in ("force", "debug"):
        if top.get(name) is not None:
            settings[name] = reader.boolean(top, name, name)
    if top.get("offlinePriority") is not None:
        settings["offlinePriority"] = reader.integer(top, "offlinePriority", "offlinePriority",
                                                     0)
    for name in ("reloadInterval", "timeout"):
        value = reader.string(top, name, name)
        if value:
            settings[name] = value
    cache = reader.mapping(top.get("cache"), "cache", _CACHE, legacy=("domaincachettl",))
    if cache:
        settings["cache"] = {name: value for name, value in cache.items() if value is not None}
    return settings


def _auth(reader, value, key):
    """
    :return: C{"user:password"}, or C{None} when neither is set.
    """
    section = reader.mapping(value, key, ("username", "password"))
    if not section:
        return None
    username, password = section.get("username"), section.get("password")
    for name, item in (("username", username), ("password", password)):
        if item is not None and not isinstance(item, str):
            reader.problem("{}.{}".format(key, name), "expected a string")
            return None
    username = (username or "").strip()
    if ":" in username:
        reader.problem(key + ".username", "must not contain ':'")
        return None
    if not username and not password:
        return None
    return "{}:{}".format(username, password or "")


def _registries(reader, value):
    if value is None:
        return []
    if not isinstance(value, list):
        reader.problem("registries", "expected a list")
        return []
    entries = []
    for index, item in enumerate(value):
        key = "registries[{}]".format(index)
        section = reader.mapping(item, key, _REGISTRY)
        if section is None:
            continue
        address = reader.string(section, "address", key + ".address")
        if not address:
            reader.warn("{}: no address; entry skipped".format(key))
            continue
        # Checked as the node's file checks them, so that one written with
        # no value (its items commented out) refuses the ConfigMap rather
        # than leaving the registry unrestricted.  Their notices come when
        # the merged file is read.
        check = Reader()
        selector.read_namespaces(check, section, "namespaces", key + ".namespaces")
        selector.read_selector(check, section, "podSelector", key + ".podSelector")
        reader.problems.extend(check.problems)
        for name in _NODE_LOCAL:
            if section.pop(name, None) is not None:
                reader.warn("{}.{}: node-local, set only in the node's config file; ignored "
                            "from the ConfigMap".format(key, name))
        entry = {name: item for name, item in section.items()
                 if name not in _OWNED and item is not None}
        entry["address"] = address
        auth = _auth(reader, section.get("auth"), key + ".auth")
        if auth is not None:
            entry["auth"] = auth
        if section.get("priority") is not None:
            entry["priority"] = reader.integer(section, "priority", key + ".priority", 0)
        entries.append(entry)
    return entries


def merge(local, settings):
    """
    Apply cluster settings to the local config document.

    :param local: the local file's document (a dict; C{None} for none).
    :param settings: from L{read_cluster_settings}.
    :return: C{(document, notices)}: a new dict (C{local} is not changed)
        and L{Notice}s about what the merge left out.
    """
    merged = copy.deepcopy(local) if local else {}
    notices = []
    if ("address" in settings and "auth" not in settings and _get(merged, "auth")
            and not _same_address(_get(merged, "address"), settings["address"])):
        _delete(merged, "auth")
        notices.append(Notice("warn", "sealos.address: the ConfigMap moves the offline "
                              "registry to another address and sends no sealos.auth; the "
                              "local auth is not carried over to it"))
    for name in ("address", "auth", "offlinePriority", "reloadInterval", "force", "debug",
                 "timeout"):
        if name in settings:
            _set(merged, name, settings[name])
    if "registries" in settings:
        _set(merged, "registries", _merge_registries(_get(merged, "registries"),
                                                     settings["registries"]))
    if "cache" in settings:
        cache = _get(merged, "cache")
        cache = dict(cache) if isinstance(cache, dict) else {}
        for name, value in settings["cache"].items():
            _set(cache, name, value)
        _set(merged, "cache", cache)
    return merged, notices


def _same_address(local, cluster):
    """
    Whether two registry addresses name the same registry by the same
    scheme, however they are spelled (a login written for https is not
    carried to http).
    """
    if not isinstance(local, str):
        return False
    local, cluster = _parsed(local), _parsed(cluster)
    if isinstance(local, str) or isinstance(cluster, str):
        return local == cluster
    return (local.scheme, local.key) == (cluster.scheme, cluster.key)


def _registry_key(address):
    """
    :return: what tells C{address}'s registry from others however it is
        spelled (L{cri_shim.model.address.RegistryAddress.key}); for an
        address that does not parse (the config's reader reports it), its
        text.
    """
    parsed = _parsed(address)
    return parsed if isinstance(parsed, str) else parsed.key


def _parsed(address):
    try:
        return parse_registry_address(address.strip())
    except InvalidRegistryAddress:
        return address.strip()


def _merge_registries(local, cluster):
    """
    The cluster's list replaces the local one; an entry for a registry the
    local file already had, however either spells its address, keeps the
    local entry's other keys (C{namespaces}, TLS files, C{mirrorOf}, keys
    this shim does not know).
    """
    by_address = {}
    for entry in local if isinstance(local, list) else ():
        if isinstance(entry, dict):
            address = _get(entry, "address")
            if isinstance(address, str):
                by_address.setdefault(_registry_key(address), entry)
    merged = []
    for entry in cluster:
        kept = {key: value for key, value in
                by_address.get(_registry_key(entry["address"]), {}).items()
                if key.lower() not in _OWNED}
        for name, value in entry.items():
            _set(kept, name, value)
        merged.append(kept)
    return merged


def _get(document, name):
    for key, value in document.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return value
    return None


def _delete(document, name):
    for key in list(document):
        if isinstance(key, str) and key.lower() == name.lower():
            del document[key]


def _set(document, name, value):
    """
    Set C{name}, replacing a key spelled in another case (keys match
    case-insensitively) rather than adding a twin.
    """
    for key in list(document):
        if isinstance(key, str) and key.lower() == name.lower():
            document[key] = value
            return
    document[name] = value


def dump(document):
    """
    :return: C{document} as YAML bytes, keys in their order.
    """
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False,
                          allow_unicode=True).encode("utf-8")
