# -*- test-case-name: tests.test_config -*-
"""
The shim's configuration: sealos image-cri-shim YAML in, a frozen L{Config} out.

Pure: no I/O beyond what the caller hands in, no Twisted.  Every problem in a
file is collected and reported at once in a L{ConfigError}, each naming its
key.  Keys match case-insensitively, as in the Go shim (it decodes YAML through
JSON into Go structs); unknown keys are ignored with a warning naming them.
"""

import re

import attr
import yaml

from cri_shim import reference
from cri_shim.duration import DurationError, format_duration, parse_duration

DEFAULT_SHIM_SOCKET = "/var/run/image-cri-shim.sock"
DEFAULT_CONFIG_PATH = "/etc/image-cri-shim.yaml"
DEFAULT_ADMIN_SOCKET = "/run/image-cri-shim/admin.sock"
CRI_SOCKETS = (
    "/run/containerd/containerd.sock",
    "/var/run/cri-dockerd.sock",
    "/var/run/crio/crio.sock",
)
OFFLINE_PRIORITY = 1000
REGISTRY_PRIORITY = 500
MAX_PRIORITY = 10000
MAX_CONFIG_BYTES = 1024 * 1024

_LEGACY_KEYS = ("image", "version")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}\Z")


class ConfigError(ValueError):
    """
    The configuration is invalid.

    :ivar problems: one C{"key: what is wrong"} string per problem.
    """

    def __init__(self, problems):
        self.problems = list(problems)
        ValueError.__init__(self, "; ".join(self.problems))


class Secret:
    """
    A password or token: its repr and str never show the value.
    """

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def reveal(self):
        """
        :return: the secret value.
        """
        return self._value

    def __bool__(self):
        return bool(self._value)

    def __eq__(self, other):
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self):
        return hash(self._value)

    def __repr__(self):
        return "<redacted>"

    __str__ = __repr__


@attr.s(frozen=True, slots=True)
class Credentials:
    """
    A registry login.
    """

    username = attr.ib()
    password = attr.ib()  # Secret


@attr.s(frozen=True, slots=True)
class TLS:
    """
    Per-registry TLS settings; verification is on unless switched off.
    """

    insecure_skip_verify = attr.ib(default=False)
    ca_file = attr.ib(default=None)
    cert_file = attr.ib(default=None)
    key_file = attr.ib(default=None)


@attr.s(frozen=True, slots=True)
class Registry:
    """
    One registry the shim may rewrite images to.

    :ivar address: the L{reference.RegistryAddress} (scheme, host, prefix).
    :ivar offline: C{True} for the top-level C{address} (sealos.hub).
    :ivar mirror_of: source domains this registry serves; empty means all.
    :ivar key: where it was configured, e.g. C{"registries[1]"}.
    """

    address = attr.ib()
    credentials = attr.ib()
    priority = attr.ib()
    offline = attr.ib(default=False)
    tls = attr.ib(default=TLS())
    mirror_of = attr.ib(default=())
    key = attr.ib(default="address")

    @property
    def name(self):
        """
        The registry as it appears in image names: C{host[/prefix]}.
        """
        return self.address.name

    def serves(self, ref):
        """
        :param ref: a L{reference.Reference}.
        :return: whether this registry may hold C{ref} (its C{mirrorOf}).
        """
        return not self.mirror_of or ref.domain in self.mirror_of

    def holds_name(self, ref):
        """
        :return: whether C{ref} already names this registry's host (its
            credentials are for the whole host, whatever the path); host
            names compare case-insensitively, as in L{reference.Reference.moved}.
        """
        return ref.domain.lower() == self.address.host


@attr.s(frozen=True, slots=True)
class Cache:
    """
    Rewrite cache settings; C{size == 0} disables the cache.
    """

    size = attr.ib(default=1024)
    ttl = attr.ib(default=30 * 60.0)
    negative_ttl = attr.ib(default=60.0)
    stats_interval = attr.ib(default=60.0)
    disable_stats = attr.ib(default=False)


@attr.s(frozen=True, slots=True)
class HealthCheck:
    """
    Registry health probing (C{healthCheck:}).
    """

    interval = attr.ib(default=10.0)
    timeout = attr.ib(default=2.0)
    failure_threshold = attr.ib(default=3)
    success_threshold = attr.ib(default=1)


@attr.s(frozen=True, slots=True)
class ConfigMapSource:
    """
    Where the cluster-wide settings live (C{configMap:}).
    """

    enabled = attr.ib(default=True)
    namespace = attr.ib(default="kube-system")
    name = attr.ib(default="image-cri-shim")
    key = attr.ib(default="registries.yaml")


@attr.s(frozen=True, slots=True)
class Config:
    """
    A validated configuration.

    :ivar registries: the candidates in failover order: priority descending;
        ties put the offline registry first, then sort by name.
    """

    shim = attr.ib(default=DEFAULT_SHIM_SOCKET)
    cri = attr.ib(default="")
    force = attr.ib(default=False)
    debug = attr.ib(default=False)
    timeout = attr.ib(default=15 * 60.0)
    reload_interval = attr.ib(default=15.0)
    probe_timeout = attr.ib(default=2.0)
    registries = attr.ib(default=())
    cache = attr.ib(default=Cache())
    configmap = attr.ib(default=ConfigMapSource())
    health = attr.ib(default=HealthCheck())
    allow_upstream = attr.ib(default=True)
    admin = attr.ib(default=DEFAULT_ADMIN_SOCKET)

    @property
    def offline(self):
        """
        The offline registry (top-level C{address}), or C{None}.
        """
        for registry in self.registries:
            if registry.offline:
                return registry
        return None

    def registry_for(self, ref):
        """
        :return: the configured L{Registry} that C{ref} already names, or
            C{None}.
        """
        for registry in self.registries:
            if registry.holds_name(ref):
                return registry
        return None


@attr.s(frozen=True, slots=True)
class Notice:
    """
    Something worth telling the operator that is not an error.

    :ivar level: C{"info"} or C{"warn"}.
    """

    level = attr.ib()
    message = attr.ib()


class Reader:
    """
    Collects problems and notices while reading one document.
    """

    def __init__(self):
        self.problems = []
        self.notices = []

    def problem(self, key, message):
        self.problems.append("{}: {}".format(key, message))

    def warn(self, message):
        self.notices.append(Notice("warn", message))

    def info(self, message):
        self.notices.append(Notice("info", message))

    def mapping(self, value, key, known, legacy=()):
        """
        Match a mapping's keys case-insensitively against C{known}.

        :return: a dict keyed by the canonical names, or C{None} if
            C{value} is not a mapping.
        """
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(key, "expected a mapping, got {}".format(_kind(value)))
            return None
        canonical = {name.lower(): name for name in known}
        result = {}
        for raw, item in value.items():
            where = _join(key, raw)
            if not isinstance(raw, str):
                self.warn("ignoring unknown key {}".format(where))
                continue
            name = canonical.get(raw.lower())
            if name is not None and name in result:
                self.warn("{} is given more than once; the last one is used".format(
                    _join(key, name)))
            if name is None:
                if raw.lower() in legacy:
                    self.info("ignoring legacy key {} (not used by this shim)".format(where))
                else:
                    self.warn("ignoring unknown key {}".format(where))
                continue
            result[name] = item
        return result

    def string(self, section, name, key, default=""):
        value = section.get(name)
        if value is None:
            return default
        if isinstance(value, (bool, list, dict)) or not isinstance(value, (str, int, float)):
            self.problem(key, "expected a string, got {}".format(_kind(value)))
            return default
        return str(value).strip()

    def boolean(self, section, name, key, default=False):
        value = section.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, "expected true or false, got {}".format(_describe(value)))
            return default
        return value

    def integer(self, section, name, key, default):
        value = section.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, "expected a whole number, got {}".format(_describe(value)))
            return default
        return value

    def duration(self, section, name, key, default, minimum=None):
        """
        Read a Go-style duration; values <= 0 mean the default, as in the Go
        shim.  C{minimum} rejects positive values that are too small to be
        sane for the key.
        """
        value = section.get(name)
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool) and value == 0:
            return default
        if not isinstance(value, str):
            self.problem(key, "expected a duration such as '15s' or '5m', got {}".format(
                _describe(value)))
            return default
        try:
            seconds = parse_duration(value)
        except DurationError as e:
            self.problem(key, str(e))
            return default
        if seconds <= 0:
            return default
        if minimum is not None and seconds < minimum:
            self.problem(key, "must be at least {}, got {!r}".format(
                format_duration(minimum), value))
            return default
        return seconds

    def priority(self, section, name, key, default):
        value = self.integer(section, name, key, default)
        if value == 0:
            return default
        if value < 0:
            self.warn("{}: {} is below 0; using 0".format(key, value))
            return 0
        if value > MAX_PRIORITY:
            self.warn("{}: {} is above {}; using {}".format(
                key, value, MAX_PRIORITY, MAX_PRIORITY))
            return MAX_PRIORITY
        return value

    def socket_path(self, section, name, key, default):
        path = self.string(section, name, key, default)
        if path.startswith("unix://"):
            path = path[len("unix://"):]
        if path and not path.startswith("/"):
            self.problem(key, "must be an absolute path, got {!r}".format(path))
            return default
        return path

    def credentials(self, value, key):
        """
        Read C{auth}: either C{"user:password"} (split on the FIRST colon, so
        passwords may hold colons) or a mapping C{{username, password}}.
        """
        if value is None or value == "":
            return None
        if isinstance(value, dict):
            section = self.mapping(value, key, ("username", "password"))
            if section is None:
                return None
            username = section.get("username")
            password = section.get("password")
            for field, item in (("username", username), ("password", password)):
                if item is not None and not isinstance(item, str):
                    self.problem(_join(key, field), "expected a string, got {}".format(
                        _kind(item)))
                    return None
            if not username and not password:
                return None
            return Credentials(username or "", Secret(password or ""))
        if not isinstance(value, str):
            self.problem(key, "expected 'user:password', got {}".format(_kind(value)))
            return None
        if not value.strip():
            return None
        username, colon, password = value.partition(":")
        if not colon:
            self.warn("{}: no ':' in the value; using it as a user name with an empty "
                      "password".format(key))
        return Credentials(username, Secret(password))

    def tls(self, section, key):
        insecure = self.boolean(section, "insecureSkipVerify", _join(key, "insecureSkipVerify"))
        files = {}
        for name in ("caFile", "certFile", "keyFile"):
            files[name] = self.socket_path(section, name, _join(key, name), "") or None
        if bool(files["certFile"]) != bool(files["keyFile"]):
            self.problem(_join(key, "certFile"), "certFile and keyFile must be set together")
        return TLS(insecure, files["caFile"], files["certFile"], files["keyFile"])


_TLS_KEYS = ("insecureSkipVerify", "caFile", "certFile", "keyFile")
_TOP_KEYS = (
    "shim", "cri", "address", "auth", "force", "debug", "timeout", "reloadInterval",
    "offlinePriority", "probeTimeout", "registries", "cache", "mirrorOf", "configMap",
    "healthCheck", "allowUpstream", "admin",
) + _TLS_KEYS
_REGISTRY_KEYS = ("address", "auth", "priority", "mirrorOf") + _TLS_KEYS
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
            source, _kind(document))])
    reader = Reader()
    config = _read(reader, document)
    if reader.problems:
        raise ConfigError(reader.problems)
    return config, reader.notices


def parse_yaml(text, source):
    """
    Parse a YAML document of at most L{MAX_CONFIG_BYTES}, safely.

    :return: the document.
    :raise ConfigError: saying what is wrong and where, without quoting the
        document (it may hold passwords).
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(["{}: larger than {} bytes".format(source, MAX_CONFIG_BYTES)])
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(["{}: not UTF-8 text ({})".format(source, e)])
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(["{}: invalid YAML: {}".format(source, _yaml_problem(e))])
    except RecursionError:
        raise ConfigError(["{}: invalid YAML: nested too deeply".format(source)])


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
        reader.problem("registries", "expected a list, got {}".format(_kind(raw_registries)))
        raw_registries = None
    for index, item in enumerate(raw_registries or ()):
        key = "registries[{}]".format(index)
        section = reader.mapping(item, key, _REGISTRY_KEYS)
        if section is None:
            continue
        address = reader.string(section, "address", _join(key, "address"))
        if not address:
            reader.warn("{}: no address; entry skipped".format(key))
            continue
        registry = _registry(reader, key, section, address, priority=reader.priority(
            section, "priority", _join(key, "priority"), REGISTRY_PRIORITY))
        if registry is None:
            continue
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
        reload_interval=reader.duration(top, "reloadInterval", "reloadInterval", 15.0,
                                        minimum=0.001),
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
        admin=_admin(reader, top.get("admin")),
    )


def _admin(reader, value):
    """
    C{admin}: a UNIX socket path, C{host:port} for TCP, or C{false} for no
    admin endpoint.

    :return: the path or C{host:port}, or C{""} when off.
    """
    if value is None:
        return DEFAULT_ADMIN_SOCKET
    if value is False:
        return ""
    if not isinstance(value, str) or not value.strip():
        reader.problem("admin", "expected a socket path, host:port or false, got {}".format(
            _describe(value)))
        return DEFAULT_ADMIN_SOCKET
    value = value.strip()
    if value.startswith("/"):
        return value
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        reader.problem("admin", "expected an absolute socket path or host:port, got {!r}"
                       .format(value))
        return DEFAULT_ADMIN_SOCKET
    if host.strip("[]") not in ("127.0.0.1", "::1", "localhost"):
        reader.warn("admin: {} is reachable from other hosts; metrics and registry details "
                    "are served without authentication".format(value))
    return value


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
    where = _join(key, "address")
    credentials = reader.credentials(section.get("auth"), _join(key, "auth"))
    tls = reader.tls(section, key)
    mirror_of = _mirror_of(reader, section.get("mirrorOf"), _join(key, "mirrorOf"))
    try:
        parsed = reference.parse_registry_address(address)
    except ValueError as e:
        reader.problem(where, str(e))
        return None
    if parsed.scheme == "http" and (tls.insecure_skip_verify or tls.ca_file or tls.cert_file):
        reader.warn("{}: TLS options have no effect on an http:// registry".format(where))
    return Registry(address=parsed, credentials=credentials, priority=priority,
                    offline=offline, tls=tls, mirror_of=mirror_of, key=key or "address")


def _mirror_of(reader, value, key):
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        reader.problem(key, "expected a list of registry domains, got {}".format(_kind(value)))
        return ()
    domains = []
    for index, item in enumerate(value):
        where = "{}[{}]".format(key, index)
        if not isinstance(item, str):
            reader.problem(where, "expected a registry domain, got {}".format(_kind(item)))
            continue
        try:
            domains.append(reference.normalize_domain(item.strip()))
        except ValueError as e:
            reader.problem(where, str(e))
    return tuple(domains)


def _find(registries, address):
    for registry in registries:
        if registry.address.host == address.host and registry.address.prefix == address.prefix:
            return registry
    return None


def detect_cri(exists, candidates=CRI_SOCKETS):
    """
    Find the runtime's socket when C{cri} is empty.

    :param exists: a callable telling whether a path exists.
    :return: the one socket that exists, or C{None} when none does.
    :raise ConfigError: when more than one exists.
    """
    found = [path for path in candidates if exists(path)]
    if len(found) > 1:
        raise ConfigError(["cri: found several CRI sockets ({}); set cri to the one to "
                           "use".format(", ".join(found))])
    return found[0] if found else None


def redacted(config):
    """
    :return: a plain-data view of C{config} for display, secrets replaced by
        C{"<redacted>"}.
    """
    return attr.asdict(config, recurse=True, value_serializer=_display)


def _display(instance, field, value):
    if isinstance(value, Secret):
        return "<redacted>"
    if isinstance(value, reference.RegistryAddress):
        return "{}://{}".format(value.scheme, value.name)
    return value


def _join(key, name):
    return "{}.{}".format(key, name) if key else str(name)


def _kind(value):
    if value is None:
        return "nothing"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _describe(value):
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return _kind(value)


def _yaml_problem(error):
    """
    Describe a YAML error by its problem and position only: PyYAML's own
    message quotes the offending line, which may hold a password.
    """
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if mark is not None and problem:
        return "{} (line {}, column {})".format(problem, mark.line + 1, mark.column + 1)
    return " ".join(str(error).split())
