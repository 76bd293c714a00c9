# -*- test-case-name: tests.model.test_config,tests.model.test_schema_edges -*-
"""
The config file's schema: sealos image-cri-shim YAML in, a frozen
L{cri_shim.model.config.Config} out.

Every problem in a file is collected and reported at once in a
L{ConfigError}, each naming its key; unknown keys are ignored with a warning
naming them.
"""

import re

import attr

from cri_shim.model import reference, selector
from cri_shim.model.config import (
    DEFAULT_ADMIN_SOCKET, DEFAULT_SHIM_SOCKET, DEFAULT_STATE_DIR, NAMES_REGISTRY,
    NAMES_REQUESTED, OFFLINE_PRIORITY, REGISTRY_PRIORITY, Cache,
    Config, ConfigError, ConfigMapSource, HealthCheck, Registry)
from cri_shim.model.duration import format_duration
from cri_shim.model.reader import Reader, join, kind, describe, parse_yaml

_LEGACY_KEYS = ("image", "version")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}\Z")
#: The shortest C{reloadInterval}: a shorter one (which the ConfigMap may
#: set) is raised to it, with a warning.  The ConfigMap poll has its own,
#: larger floor (L{cri_shim.sync.configmap.MIN_POLL_INTERVAL}).
MIN_RELOAD_INTERVAL = 1.0


_TLS_KEYS = ("insecureSkipVerify", "caFile", "certFile", "keyFile")
_TOP_KEYS = (
    "shim", "cri", "address", "auth", "force", "debug", "timeout", "reloadInterval",
    "offlinePriority", "probeTimeout", "registries", "cache", "mirrorOf", "configMap",
    "healthCheck", "allowUpstream", "admin", "adminTokenFile", "names", "stateDir", "events",
) + _TLS_KEYS
_REGISTRY_KEYS = ("address", "auth", "priority", "mirrorOf", "namespaces",
                  "podSelector") + _TLS_KEYS
_CONFIGMAP_KEYS = ("enabled", "namespace", "name", "key")
_HEALTH_KEYS = ("interval", "timeout", "failureThreshold", "successThreshold")
_CACHE_KEYS = ("imageCacheSize", "imageCacheTTL", "negativeCacheTTL", "statsLogInterval",
               "disableStats")


def load(text, source="config", require_settings=False):
    """
    Parse and validate a configuration document.

    :param text: the YAML document, C{bytes} or C{str}.
    :param source: a name for the document in messages.
    :param require_settings: refuse a document with nothing in it (only
        comments, a document marker, C{null}) instead of reading it as all
        defaults.
    :return: C{(Config, [Notice, ...])}.
    :raise ConfigError: listing every problem found.
    """
    document = parse_yaml(text, source)
    if document is None and require_settings:
        raise ConfigError(["{}: holds no settings (only comments or nothing)".format(source)])
    if document is not None and not isinstance(document, dict):
        raise ConfigError(["{}: expected a mapping of settings, got {}".format(
            source, kind(document))])
    reader = Reader()
    config = _read(reader, document)
    if reader.problems:
        raise ConfigError(reader.problems)
    return config, reader.notices


def _read(reader, document):
    top = reader.mapping(document, "", _TOP_KEYS, legacy=_LEGACY_KEYS)
    if top is None:
        return Config()
    registries = []
    address = reader.string(top, "address", "address")
    # Read even without an address, so that a wrong value is reported.
    offline_priority = reader.priority(top, "offlinePriority", "offlinePriority",
                                       OFFLINE_PRIORITY)
    if address:
        offline = _registry(reader, "", top, address, offline=True, priority=offline_priority)
        if offline is not None:
            registries.append(offline)
    else:
        # Nothing uses them without an address, but mistakes are still told.
        unused = [key for key in ("auth", "mirrorOf") + _TLS_KEYS if top.get(key) is not None]
        reader.credentials(top.get("auth"), "auth")
        reader.tls(top, "")
        _mirror_of(reader, top.get("mirrorOf"), "mirrorOf")
        if unused:
            reader.warn("{}: set without an address; ignored".format(", ".join(unused)))
    raw_registries = top.get("registries")
    if raw_registries is not None and not isinstance(raw_registries, list):
        reader.problem("registries", "expected a list, got {}".format(kind(raw_registries)))
        raw_registries = None
    for index, item in enumerate(raw_registries or ()):
        key = "registries[{}]".format(index)
        section = reader.mapping(item, key, _REGISTRY_KEYS)
        if section is None:
            continue
        address = reader.string(section, "address", join(key, "address"))
        if not address:
            reader.warn("{}: no address; entry skipped".format(key))
            continue
        registry = _registry(reader, key, section, address, priority=reader.priority(
            section, "priority", join(key, "priority"), REGISTRY_PRIORITY))
        if registry is None:
            continue
        registry = _restricted(reader, key, section, registry)
        twin = _find(registries, registry.address)
        if twin is not None:
            reader.warn("{}: {} is already configured by {}; entry ignored".format(
                key, registry.name, twin.key))
            continue
        registries.append(registry)
    registries.sort(key=lambda r: (-r.priority, not r.offline, r.name))

    cache = reader.mapping(top.get("cache"), "cache", _CACHE_KEYS, legacy=("domaincachettl",))
    if cache is None:
        cache = {}
    size = reader.integer(cache, "imageCacheSize", "cache.imageCacheSize", 1024)
    if size < 0:
        reader.warn("cache.imageCacheSize: {} is negative; the cache is disabled".format(size))
        size = 0
    disable_stats = reader.boolean(cache, "disableStats", "cache.disableStats")
    stats_interval = reader.duration(cache, "statsLogInterval", "cache.statsLogInterval", 60.0)
    return Config(
        shim=reader.socket_path(top, "shim", "shim", DEFAULT_SHIM_SOCKET) or DEFAULT_SHIM_SOCKET,
        cri=reader.socket_path(top, "cri", "cri", ""),
        force=reader.boolean(top, "force", "force"),
        debug=reader.boolean(top, "debug", "debug"),
        timeout=reader.duration(top, "timeout", "timeout", 15 * 60.0),
        reload_interval=_reload_interval(reader, top),
        probe_timeout=reader.duration(top, "probeTimeout", "probeTimeout", 2.0),
        registries=tuple(registries),
        cache=Cache(
            size=size,
            ttl=reader.duration(cache, "imageCacheTTL", "cache.imageCacheTTL", 30 * 60.0),
            negative_ttl=reader.duration(cache, "negativeCacheTTL", "cache.negativeCacheTTL",
                                         60.0),
            stats_interval=0.0 if disable_stats else stats_interval,
            disable_stats=disable_stats,
        ),
        configmap=_configmap(reader, top.get("configMap")),
        health=_health(reader, top.get("healthCheck")),
        allow_upstream=reader.boolean(top, "allowUpstream", "allowUpstream", True),
        names=_names(reader, top),
        state_dir=reader.socket_path(top, "stateDir", "stateDir", DEFAULT_STATE_DIR)
        or DEFAULT_STATE_DIR,
        events=reader.boolean(top, "events", "events", True),
        **_admin(reader, top),
    )


def _reload_interval(reader, top):
    seconds = reader.duration(top, "reloadInterval", "reloadInterval", 15.0, minimum=0.001)
    if seconds >= MIN_RELOAD_INTERVAL:
        return seconds
    reader.warn("reloadInterval: {} is shorter than the floor of {floor}; using {floor}".format(
        format_duration(seconds), floor=format_duration(MIN_RELOAD_INTERVAL)))
    return MIN_RELOAD_INTERVAL


def _names(reader, top):
    """
    C{names}: C{requested} (images show under the names they were asked
    for) or C{registry} (under the names they were pulled by).
    """
    value = reader.string(top, "names", "names", NAMES_REQUESTED).lower()
    if value not in (NAMES_REQUESTED, NAMES_REGISTRY):
        reader.problem("names", "expected {} or {}, got {!r}".format(
            NAMES_REQUESTED, NAMES_REGISTRY, value))
        return NAMES_REQUESTED
    return value


def _admin(reader, top):
    """
    C{admin}: a UNIX socket path, C{host:port} for TCP, or C{false} for no
    admin endpoint; C{adminTokenFile}: the absolute path of the bearer token
    that opens the whole endpoint on TCP.

    :return: the L{Config} fields C{admin} (the path or C{host:port}, or
        C{""} when off) and C{admin_token_file} (or C{""}).
    """
    value = top.get("admin")
    token_file = reader.string(top, "adminTokenFile", "adminTokenFile")
    if token_file and not token_file.startswith("/"):
        reader.problem("adminTokenFile", "expected an absolute path, got {!r}".format(
            token_file))
    if value is None:
        value = DEFAULT_ADMIN_SOCKET
    elif value is False:
        value = ""
    elif not isinstance(value, str) or not value.strip():
        reader.problem("admin", "expected a socket path, host:port or false, got {}".format(
            describe(value)))
        value = DEFAULT_ADMIN_SOCKET
    value = value.strip()
    if value and not value.startswith("/"):
        host, colon, port = value.rpartition(":")
        if not colon or not port.isdigit() or not 0 < int(port) < 65536 or not host:
            reader.problem("admin", "expected an absolute socket path or host:port, got {!r}"
                           .format(value))
            value = DEFAULT_ADMIN_SOCKET
        elif host.strip("[]") not in ("127.0.0.1", "::1", "localhost"):
            reader.warn("admin: {} is reachable from other hosts; metrics are served there "
                        "without authentication".format(value))
    if token_file and (not value or value.startswith("/")):
        reader.warn("adminTokenFile: the admin endpoint is not on TCP; ignored")
    return {"admin": value, "admin_token_file": token_file}


def _health(reader, value):
    section = reader.mapping(value, "healthCheck", _HEALTH_KEYS)
    default = HealthCheck()
    if section is None:
        return default
    thresholds = {}
    for name, attribute in (("failureThreshold", "failure_threshold"),
                            ("successThreshold", "success_threshold")):
        key = "healthCheck." + name
        number = reader.integer(section, name, key, getattr(default, attribute))
        if not 1 <= number <= 100:
            reader.problem(key, "must be between 1 and 100, got {}".format(number))
            number = getattr(default, attribute)
        thresholds[attribute] = number
    return HealthCheck(
        interval=reader.duration(section, "interval", "healthCheck.interval", default.interval,
                                 minimum=0.1),
        timeout=reader.duration(section, "timeout", "healthCheck.timeout", default.timeout),
        **thresholds)


def _configmap(reader, value):
    section = reader.mapping(value, "configMap", _CONFIGMAP_KEYS)
    if section is None:
        return ConfigMapSource()
    default = ConfigMapSource()
    values = {"enabled": reader.boolean(section, "enabled", "configMap.enabled", True)}
    for name, pattern in (("namespace", _DNS_LABEL), ("name", _DNS_SUBDOMAIN),
                          ("key", _CONFIGMAP_KEY)):
        key = "configMap." + name
        text = reader.string(section, name, key, getattr(default, name))
        if not pattern.match(text):
            reader.problem(key, "{!r} is not a valid {}".format(text, name))
            text = getattr(default, name)
        values[name] = text
    return ConfigMapSource(**values)


def _registry(reader, key, section, address, priority, offline=False):
    """
    Read one registry: the top-level offline one (C{key == ""}) or a
    C{registries[]} entry.
    """
    where = join(key, "address")
    credentials = reader.credentials(section.get("auth"), join(key, "auth"))
    tls = reader.tls(section, key)
    mirror_of = _mirror_of(reader, section.get("mirrorOf"), join(key, "mirrorOf"))
    try:
        parsed = reference.parse_registry_address(address)
    except ValueError as e:
        reader.problem(where, str(e))
        return None
    if parsed.scheme == "http" and (tls.insecure_skip_verify or tls.ca_file or tls.cert_file):
        reader.warn("{}: TLS options have no effect on an http:// registry".format(where))
    return Registry(address=parsed, credentials=credentials, priority=priority,
                    offline=offline, tls=tls, mirror_of=mirror_of, key=key or "address")


def _restricted(reader, key, section, registry):
    """
    A C{registries[]} entry's C{namespaces} and C{podSelector}: the
    workloads it serves (L{cri_shim.model.selector}).
    """
    return attr.evolve(
        registry,
        namespaces=selector.read_namespaces(reader, section, "namespaces",
                                            join(key, "namespaces")),
        pod_selector=selector.read_selector(reader, section, "podSelector",
                                            join(key, "podSelector")))


def _mirror_of(reader, value, key):
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        reader.problem(key, "expected a list of registry domains, got {}".format(kind(value)))
        return ()
    domains = []
    for index, item in enumerate(value):
        where = "{}[{}]".format(key, index)
        if not isinstance(item, str):
            reader.problem(where, "expected a registry domain, got {}".format(kind(item)))
            continue
        try:
            domains.append(reference.normalize_domain(item.strip()))
        except ValueError as e:
            reader.problem(where, str(e))
    return tuple(domains)


def _find(registries, address):
    """
    :return: the registry of C{registries} at C{address}, however either
        is spelled (L{reference.RegistryAddress.key}), or C{None}.
    """
    for registry in registries:
        if registry.address.key == address.key:
            return registry
    return None


