# -*- test-case-name: tests.registries.test_tls,tests.sync.test_kube -*-
"""
The one reader of certificates and keys, for every TLS client of the shim
(registry C{caFile}/C{certFile}/C{keyFile}, a kubeconfig's authority and
client certificate): files read with a bound and without blocking, PEM blocks
found and checked, every error a L{PEMError} whose message names the setting
and never quotes the data.

Reading a file may block on a slow disk: callers on the reactor run
L{read_file} in a thread.
"""

import os
import re
import stat

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet.ssl import Certificate, PrivateCertificate

#: The largest certificate or key file read (a CA bundle is ~200 KiB).
MAX_FILE_BYTES = 1024 * 1024

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


class PEMError(ValueError):
    """
    A certificate or key that cannot be used; the message says which and
    why, and holds no key material.
    """


def read_file(path, label, limit=MAX_FILE_BYTES):
    """
    Read a small local file: only a regular file of at most C{limit} bytes.
    It is opened without blocking, so a FIFO or a device is refused rather
    than waited on.

    :param label: how errors name it (C{"caFile /etc/ssl/ca.pem"}).
    :return: its bytes.
    :raise PEMError: C{"<label>: <problem>"}.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise PEMError("{}: {}".format(label, e.strerror or type(e).__name__))
    with os.fdopen(fd, "rb") as f:
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):
            raise PEMError("{}: Is a directory".format(label))
        if not stat.S_ISREG(status.st_mode):
            raise PEMError("{}: not a regular file".format(label))
        data = f.read(limit + 1)
    if len(data) > limit:
        raise PEMError("{}: larger than {} bytes".format(label, limit))
    return data


def blocks(data, wanted):
    """
    :return: the PEM blocks in C{data} whose label C{wanted(label)} accepts,
        each ending in a newline.
    """
    return [match.group(0) + b"\n" for match in _PEM.finditer(data) if wanted(match.group(1))]


def _is_certificate(label):
    return label == b"CERTIFICATE"


def authority(data, what):
    """
    :param what: how errors name it (C{"the certificate authority"}).
    :return: the C{CERTIFICATE} blocks of a CA bundle, as PEM, each checked.
    :raise PEMError: there is none, or one cannot be read.
    """
    pem = b"".join(blocks(data, _is_certificate))
    if not pem:
        raise PEMError("no certificate in {}".format(what))
    try:
        certificates(pem)
    except crypto.Error:
        raise PEMError("{} cannot be read".format(what))
    return pem


def certificates(pem):
    """
    :return: the L{Certificate}s of the C{CERTIFICATE} blocks in C{pem}.
    """
    return [Certificate.loadPEM(block) for block in blocks(pem, _is_certificate)]


def client_pair(cert_data, key_data, cert_what="the client certificate",
                key_what="the client key"):
    """
    A client certificate and its key (which may be one file holding both,
    as the kubelet's C{kubelet-client-current.pem}).

    :param cert_what: how errors name the certificate.
    :param key_what: how errors name the key.
    :return: C{(certificate PEM, key PEM, subject)}: the certificate with
        its chain, the first private key, and C{"CN=..., O=..."}.
    :raise PEMError: one is missing or unreadable, the key is encrypted, or
        it does not match the certificate.
    """
    cert_pem = blocks(cert_data, _is_certificate)
    key_pem = blocks(key_data, lambda label: label.endswith(b"PRIVATE KEY"))[:1]
    if not cert_pem:
        raise PEMError("no certificate in {}".format(cert_what))
    if not key_pem:
        raise PEMError("no private key in {}".format(key_what))
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem[0])
    except ValueError:
        raise PEMError("{} cannot be read".format(cert_what))
    try:
        key = serialization.load_pem_private_key(key_pem[0], password=None)
    except TypeError:
        raise PEMError("{} is encrypted, which is not supported".format(key_what))
    except (ValueError, UnsupportedAlgorithm):
        raise PEMError("{} cannot be read".format(key_what))
    if _public(key) != _public(certificate):
        raise PEMError("{} does not match {}".format(key_what, cert_what))
    names = ["{}={}".format(short, attribute.value)
             for short, oid in (("CN", NameOID.COMMON_NAME), ("O", NameOID.ORGANIZATION_NAME))
             for attribute in certificate.subject.get_attributes_for_oid(oid)]
    return b"".join(cert_pem), key_pem[0], ", ".join(names) or "without a subject"


def private_certificate(cert_pem, key_pem):
    """
    :return: the L{PrivateCertificate} of a pair from L{client_pair}.
    """
    return PrivateCertificate.loadPEM(cert_pem + key_pem)


def _public(holder):
    """
    :return: the public key of a certificate or private key, as DER.
    """
    return holder.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
