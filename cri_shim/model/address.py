# -*- test-case-name: tests.model.test_reference,tests.model.test_reference_edges,tests.model.test_address -*-
"""
The registry addresses of the shim's configuration: parsing them
(:func:`parse_registry_address`), and telling when two spellings name one
registry (:attr:`RegistryAddress.key`).  The host of such an address ends
up inside rewritten image names, so it obeys the grammar of image
references (L{cri_shim.model.grammar}).  Pure.
"""

from urllib.parse import urlsplit

import attr

from cri_shim.model.grammar import DEFAULT_DOMAIN, DOCKER_HUB_ENDPOINT
from cri_shim.model.grammar import (
    DOCKER_HUB_ALIASES as _DOCKER_HUB_ALIASES, DOMAIN as _DOMAIN,
    canonical_domain as _canonical_domain, looks_like_domain as _looks_like_domain,
    path_problem as _path_problem, show as _show)

#: The port each scheme means when an address names none.
DEFAULT_PORTS = {"https": 443, "http": 80}


class InvalidRegistryAddress(ValueError):
    """
    A registry address from the configuration is not usable.  The message
    quotes the address and names the precise problem.
    """


@attr.s(frozen=True, slots=True)
class RegistryAddress:
    """
    A registry the shim sends images to, as configured.

    :ivar scheme: ``"http"`` or ``"https"``.
    :ivar host: The registry as it appears in image names: lowercased, with
        its port if one was given, and ``"docker.io"`` for Docker Hub under
        any of its names.  This is what to pass to :meth:`Reference.moved`.
    :ivar endpoint: The host (and port) serving the registry API: the same as
        ``host``, except ``"registry-1.docker.io"`` for Docker Hub.
    :ivar prefix: A repository path to put in front of the paths of moved
        images (e.g. ``"proxy"``), or ``""``.
    """

    scheme = attr.ib()
    host = attr.ib()
    endpoint = attr.ib()
    prefix = attr.ib(default="")

    @property
    def url(self):
        """
        The root URL of the registry API server, ``"scheme://endpoint"``.
        The prefix is not part of it: it belongs to repository names.
        """
        return f"{self.scheme}://{self.endpoint}"

    @property
    def name(self):
        """
        The registry as image names show it: ``"host"`` or ``"host/prefix"``.
        """
        return f"{self.host}/{self.prefix}" if self.prefix else self.host

    @property
    def hostname(self):
        """
        The endpoint's host without port or IPv6 brackets, as a TLS
        connection names it.
        """
        return urlsplit(self.url).hostname

    @property
    def port(self):
        """
        The endpoint's port, or the scheme's default.
        """
        return urlsplit(self.url).port or DEFAULT_PORTS[self.scheme]

    @property
    def key(self):
        """
        What tells registries apart, however their addresses are spelled
        (``team-a.example``, ``HTTPS://Team-A.example:443/``): the host,
        lowercased, without its scheme's default port, Docker Hub under any
        of its names; and the prefix.  Images on either are named alike, so
        the scheme is no part of it.
        """
        return (self._bare_host(self.host), self.prefix)

    def names_host(self, domain):
        """
        :param domain: an image name's domain.
        :return: whether it is this registry's host, in any case, with or
            without the default port.
        """
        return self._bare_host(domain.lower()) == self.key[0]

    def _bare_host(self, host):
        default = ":{}".format(DEFAULT_PORTS[self.scheme])
        if host.endswith(default):
            host = host[:-len(default)]
        return DEFAULT_DOMAIN if host in _DOCKER_HUB_ALIASES else host


def _address_error(text, problem):
    return InvalidRegistryAddress(
        f"invalid registry address {_show(text)}: {problem}"
    )


def _without_userinfo(text):
    """
    Hide everything between the scheme and the last ``@`` of an address:
    neither a host nor a prefix holds ``@``, so whatever comes before the
    last one is user information, whatever its characters.
    """
    head, separator, rest = text.partition("://")
    if not separator or "@" in head:
        head, separator, rest = "", "", text
    return head + separator + "<redacted>@" + rest.rpartition("@")[2]


def parse_registry_address(text):
    """
    Parse a registry address from the configuration.

    The form is ``[scheme://]host[:port][/prefix]``: ``"sealos.hub:5000"``
    (no scheme means https), ``"http://sealos.hub:5000"``,
    ``"https://harbor.local/proxy/"`` (prefix ``"proxy"``).
    ``"docker.io"``, ``"index.docker.io"`` and ``"registry-1.docker.io"``
    (without a port) all mean Docker Hub: host ``"docker.io"``, endpoint
    ``"registry-1.docker.io"``.

    The host must be one :func:`parse` recognises as a domain (containing
    ``.`` or a port, or ``localhost``): otherwise images moved there would
    read as Docker Hub repositories.

    :param text: The address as written in the configuration.
    :return: A :class:`RegistryAddress`.
    :raises InvalidRegistryAddress: For a scheme other than http or https,
        user information, a query or fragment, an empty or invalid host, a
        port outside 1-65535, or a prefix that is not a repository path.
    """
    if "@" in text:
        # Before any check that quotes the address: a password may hold any
        # character, "/", "?" and "#" included.
        raise _address_error(
            _without_userinfo(text), "user information is not allowed"
        )
    scheme, separator, rest = text.partition("://")
    if separator:
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise _address_error(
                text, f"unsupported scheme {_show(scheme)} (use http or https)"
            )
    else:
        scheme, rest = "https", text
    if "?" in rest or "#" in rest:
        raise _address_error(text, "a query or fragment is not allowed")
    netloc, _, prefix = rest.partition("/")
    if not netloc:
        raise _address_error(text, "empty host")
    match = _DOMAIN.fullmatch(netloc)
    if match is None:
        raise _address_error(text, f"invalid host {_show(netloc)}")
    port = match.group(1)
    if port is not None and not (len(port) <= 5 and 0 < int(port) < 65536):
        raise _address_error(text, f"invalid port {_show(port)}")
    # Judged as it will be written in image names: lowercased ("A" is a
    # domain by its case, "a" is a Docker Hub namespace).
    if not _looks_like_domain(netloc.lower()):
        raise _address_error(
            text,
            f"host {_show(netloc)} would read as a Docker Hub namespace in "
            f"image names: give a fully qualified name or a port",
        )
    prefix = prefix.rstrip("/")
    if prefix:
        problem = _path_problem(prefix)
        if problem is not None:
            raise _address_error(text, f"invalid prefix: {problem}")
    host = endpoint = netloc.lower()
    if host in _DOCKER_HUB_ALIASES:
        host, endpoint = DEFAULT_DOMAIN, DOCKER_HUB_ENDPOINT
    return RegistryAddress(
        scheme=scheme, host=host, endpoint=endpoint, prefix=prefix
    )


def normalize_domain(text):
    """
    Normalise a registry domain as image names carry it (for
    C{mirrorOf}): lowercased, C{index.docker.io} as C{docker.io}.

    :raises InvalidRegistryAddress: if C{text} is not a registry domain.
    """
    if not (_DOMAIN.fullmatch(text) and _looks_like_domain(text.lower())):
        raise InvalidRegistryAddress(f"invalid registry domain {_show(text)}")
    domain = _canonical_domain(text.lower())
    return DEFAULT_DOMAIN if domain in _DOCKER_HUB_ALIASES else domain
