# -*- test-case-name: tests.model.test_config,tests.model.test_config_edges -*-
"""
What a configuration is: the frozen L{Config} and its parts, the defaults,
L{Secret} (a value that never shows itself), and two questions asked of a
config (which runtime socket, how it looks with its secrets hidden).

L{cri_shim.model.schema} reads the YAML into these types.
"""

import attr

from cri_shim.model import reference

DEFAULT_SHIM_SOCKET = "/var/run/image-cri-shim.sock"
DEFAULT_CONFIG_PATH = "/etc/image-cri-shim.yaml"
DEFAULT_ADMIN_SOCKET = "/run/image-cri-shim/admin.sock"
#: Where the shim keeps what it must remember across restarts (the folder of
#: the Go shim's C{image} key).
DEFAULT_STATE_DIR = "/var/lib/image-cri-shim"
#: C{names}: the node shows images under the names they were asked for...
NAMES_REQUESTED = "requested"
#: ...or under the registry names they were pulled by (the Go shim's view).
NAMES_REGISTRY = "registry"
CRI_SOCKETS = (
    "/run/containerd/containerd.sock",
    "/var/run/cri-dockerd.sock",
    "/var/run/crio/crio.sock",
)
OFFLINE_PRIORITY = 1000
REGISTRY_PRIORITY = 500
MAX_PRIORITY = 10000
MAX_CONFIG_BYTES = 1024 * 1024


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
    :ivar namespaces: the only namespaces whose pods it serves; empty: any.
    :ivar pod_selector: a L{cri_shim.model.selector.Selector} the pods it
        serves match, or C{None}: any.
    """

    address = attr.ib()
    credentials = attr.ib()
    priority = attr.ib()
    offline = attr.ib(default=False)
    tls = attr.ib(default=TLS())
    mirror_of = attr.ib(default=())
    key = attr.ib(default="address")
    namespaces = attr.ib(default=())
    pod_selector = attr.ib(default=None)

    @property
    def restricted(self):
        """
        Whether it serves only some workloads (C{namespaces}, C{podSelector}).
        """
        return bool(self.namespaces) or self.pod_selector is not None

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
        :return: whether C{ref} already names this registry's host, in any
            case, with or without the default port
            (L{cri_shim.model.address.RegistryAddress.names_host}).
        """
        return self.address.names_host(ref.domain)

    def holds_path(self, ref):
        """
        :return: whether C{ref}'s path lies under this registry's prefix
            (any path does when there is none).
        """
        prefix = self.address.prefix
        return not prefix or ref.path == prefix or ref.path.startswith(prefix + "/")


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
    admin_token_file = attr.ib(default="")
    events = attr.ib(default=True)
    names = attr.ib(default=NAMES_REQUESTED)
    state_dir = attr.ib(default=DEFAULT_STATE_DIR)

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
            C{None}: of those on its host, the one with the longest prefix
            its path lies under (C{H/b/app} is C{H/b}'s, C{H/c/x} is
            C{H}'s); when its path lies under none, the first on its host
            by priority (a login is for the whole host).
        """
        on_host = [registry for registry in self.registries if registry.holds_name(ref)]
        under = [registry for registry in on_host if registry.holds_path(ref)]
        return max(under, key=lambda registry: len(registry.address.prefix),
                   default=on_host[0] if on_host else None)


@attr.s(frozen=True, slots=True)
class Notice:
    """
    Something worth telling the operator that is not an error.

    :ivar level: C{"info"} or C{"warn"}.
    """

    level = attr.ib()
    message = attr.ib()


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
