# -*- test-case-name: tests.registries.test_tls -*-
"""
TLS for registry probes: verified by default against the system trust store
(hostname checked by service-identity); per registry, a CA file, a client
certificate, or — only when configured for that registry — no verification.
"""

import re

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    PrivateCertificate,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from cri_shim.model.config import TLS


@implementer(IPolicyForHTTPS)
class RegistryTLSPolicy:
    """
    Chooses the TLS settings for a connection by the registry it goes to.

    :param holder: the L{cri_shim.snapshot.SnapshotHolder} whose current
        configuration names the registries.
    """

    def __init__(self, holder):
        self._holder = holder
        self._generation = None
        self._creators = {}

    def creatorForNetloc(self, hostname, port):
        snapshot = self._holder.current
        if snapshot.generation != self._generation:
            self._creators = {}
            self._generation = snapshot.generation
        host = hostname.decode("ascii") if isinstance(hostname, bytes) else hostname
        key = (host, port)
        creator = self._creators.get(key)
        if creator is None:
            creator = self._creators[key] = _creator(host, _settings(snapshot.config, host, port))
        return creator


def _settings(config, host, port):
    for registry in config.registries:
        address = registry.address
        if address.scheme == "https" and (address.hostname, address.port) == (host, port):
            return registry.tls
    return TLS()


def _creator(host, tls):
    client = None
    if tls.cert_file:
        with open(tls.cert_file, "rb") as cert, open(tls.key_file, "rb") as key:
            client = PrivateCertificate.loadPEM(cert.read() + b"\n" + key.read())
    if tls.insecure_skip_verify:
        return Unverified(host, client)
    options = {}
    if tls.ca_file:
        options["trustRoot"] = trustRootFromCertificates(_certificates(tls.ca_file))
    if client is not None:
        options["clientCertificate"] = client
    return optionsForClientTLS(host, **options)


def _certificates(path):
    with open(path, "rb") as f:
        found = certificates(f.read())
    if not found:
        raise ValueError("{}: no PEM certificate found".format(path))
    return found


_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----",
                          re.DOTALL)


def certificates(pem):
    """
    :return: the L{Certificate}s of the C{CERTIFICATE} blocks in C{pem}
        (a CA bundle, a kubeconfig's certificate authority).
    """
    return [Certificate.loadPEM(match.group(0)) for match in _CERTIFICATE.finditer(pem)]


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
