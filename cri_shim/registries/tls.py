# -*- test-case-name: tests.registries.test_tls -*-
"""
The one TLS policy of every outbound HTTPS client (registries, their token
realms, the Kubernetes API server): per host, which certificates to trust
(the system trust store unless told), which client certificate to present,
and whether to verify at all; and the C{Agent} that connects through it.

What a host gets comes from a callable: a registry's files (C{caFile},
C{certFile}, C{keyFile}) read by L{cri_shim.registries.pem} in a thread,
never on the reactor; the API server's settings from its kubeconfig, in
memory.  A connection whose settings cannot be read fails, with the reason.
"""

import attr
from OpenSSL import SSL
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import maybeDeferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.internet.ssl import CertificateOptions, optionsForClientTLS, trustRootFromCertificates
from twisted.internet.threads import deferToThreadPool
from twisted.web.client import Agent
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from cri_shim.model.config import TLS
from cri_shim.registries import pem


@attr.s(frozen=True)
class Settings:
    """
    How to talk TLS to one host, read and checked.

    :ivar trust: the L{twisted.internet.ssl.Certificate}s to trust (only
        those), or C{None} for the system trust store.
    :ivar client: the L{twisted.internet.ssl.PrivateCertificate} to present,
        or C{None}.
    :ivar insecure: C{True} to skip verifying the server.
    """

    trust = attr.ib(default=None, repr=False)
    client = attr.ib(default=None, repr=False)
    insecure = attr.ib(default=False)

    def creator(self, host):
        """
        :return: the client connection creator for C{host}: its certificate
            checked against L{trust} and its name or IP, unless L{insecure}.
        """
        if self.insecure:
            return Unverified(host, self.client)
        options = {}
        if self.trust is not None:
            options["trustRoot"] = trustRootFromCertificates(self.trust)
        if self.client is not None:
            options["clientCertificate"] = self.client
        return optionsForClientTLS(host, **options)


class TLSPolicy:
    """
    One connection creator per C{(host, port)}, made from what
    C{settings_for(host, port)} gives: L{Settings}, or a Deferred firing
    with them.  Creators are made anew when C{generation()} changes (the
    configuration was reloaded: files are read again).
    """

    def __init__(self, settings_for, generation=lambda: None):
        self._settings_for = settings_for
        self._generation = generation
        self._seen = object()
        self._creators = {}

    def creator(self, host, port):
        """
        :return: a Deferred firing with the connection creator for C{host}
            (text) and C{port}, or failing (a L{pem.PEMError} naming the
            setting).
        """
        generation = self._generation()
        if generation != self._seen:
            self._seen, self._creators = generation, {}
        creator = self._creators.get((host, port))
        if creator is not None:
            return succeed(creator)

        def made(settings):
            creator = settings.creator(host)
            if self._seen == generation:
                self._creators[(host, port)] = creator
            return creator
        return maybeDeferred(self._settings_for, host, port).addCallback(made)


def agent(reactor, policy, pool):
    """
    :param policy: the L{TLSPolicy} for C{https} URLs.
    :param pool: an C{HTTPConnectionPool} (see
        L{cri_shim.registries.httputil.pool}).
    :return: an C{Agent} connecting through C{policy}.
    """
    return Agent.usingEndpointFactory(reactor, _Endpoints(reactor, policy), pool)


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """
    TCP for C{http}, TCP then TLS by the policy for C{https}.
    """

    def __init__(self, reactor, policy):
        self._reactor = reactor
        self._policy = policy

    def endpointForURI(self, uri):
        host = uri.host.decode("ascii")
        tcp = HostnameEndpoint(self._reactor, host, uri.port)
        if uri.scheme == b"http":
            return tcp
        if uri.scheme == b"https":
            return _TLSEndpoint(self._policy, host, uri.port, tcp)
        raise SchemeNotSupported("unsupported scheme: {!r}".format(uri.scheme))


@implementer(IStreamClientEndpoint)
class _TLSEndpoint:
    """
    Waits for the host's connection creator (its files may still be being
    read), then connects with it.
    """

    def __init__(self, policy, host, port, tcp):
        self._policy = policy
        self._host = host
        self._port = port
        self._tcp = tcp

    def connect(self, factory):
        d = self._policy.creator(self._host, self._port)
        return d.addCallback(lambda creator: wrapClientTLS(creator, self._tcp).connect(factory))


def registry_policy(holder, reactor, threadpool=None):
    """
    The policy of the registry clients: each registry's TLS settings as the
    current configuration names them; files read in C{threadpool} (the
    reactor's by default), again after each reload.

    :param holder: the L{cri_shim.snapshot.SnapshotHolder}.
    """
    def settings_for(host, port):
        tls = _registry_tls(holder.current.config, host, port)
        if not (tls.ca_file or tls.cert_file):
            return Settings(insecure=tls.insecure_skip_verify)
        return deferToThreadPool(reactor, threadpool or reactor.getThreadPool(),
                                 read_registry_files, tls)
    return TLSPolicy(settings_for, lambda: holder.current.generation)


def _registry_tls(config, host, port):
    for registry in config.registries:
        address = registry.address
        if address.scheme == "https" and (address.hostname, address.port) == (host, port):
            return registry.tls
    return TLS()


def read_registry_files(tls):
    """
    Read and check a registry's TLS files.  Blocking: runs in a thread.

    :param tls: its L{cri_shim.model.config.TLS}.
    :return: its L{Settings}.
    :raise pem.PEMError: naming the key and file.
    """
    trust = client = None
    if tls.ca_file:
        what = "caFile " + tls.ca_file
        trust = pem.certificates(pem.authority(pem.read_file(tls.ca_file, what), what))
    if tls.cert_file:
        cert_what, key_what = "certFile " + tls.cert_file, "keyFile " + tls.key_file
        cert_pem, key_pem, _ = pem.client_pair(pem.read_file(tls.cert_file, cert_what),
                                               pem.read_file(tls.key_file, key_what),
                                               cert_what, key_what)
        client = pem.private_certificate(cert_pem, key_pem)
    return Settings(trust, client, tls.insecure_skip_verify)


@implementer(IOpenSSLClientConnectionCreator)
class Unverified:
    """
    TLS without verifying the server (a registry's C{insecureSkipVerify}, a
    kubeconfig's C{insecure-skip-tls-verify}), still presenting the client
    certificate, if any, and sending the server name (not for IPs).

    :param host: the server's name or IP.
    :param client: a C{PrivateCertificate}, or C{None}.
    """

    def __init__(self, host, client=None):
        options = {}
        if client is not None:
            options = {"privateKey": client.privateKey.original, "certificate": client.original}
        self._context = CertificateOptions(verify=False, **options).getContext()
        self._name = None
        if not (isIPAddress(host) or isIPv6Address(host)):
            self._name = host.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol):
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if self._name is not None:
            connection.set_tlsext_host_name(self._name)
        return connection
