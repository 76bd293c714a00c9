# -*- test-case-name: tests.sync.test_kube -*-
"""
An API server found, and how to authenticate to it: the L{Cluster} value
(server, identity, TLS settings, its policy) and its kinds of login (a fixed
token, a rotating token file, Basic); and how discovery says a candidate
is missing or broken.

Secrets (tokens, passwords, private keys) never appear in a repr, an
identity, a warning or a log line.
"""

import os
import time

import attr
from twisted.logger import Logger

from cri_shim.model.config import Secret
from cri_shim.registries import pem
from cri_shim.registries.httputil import basic_auth
from cri_shim.registries.tls import Settings, TLSPolicy

#: Seconds after which a token file is read again even if it looks unchanged.
TOKEN_REREAD = 60.0


class Missing(Exception):
    """
    The candidate's file does not exist.
    """


class Broken(Exception):
    """
    The candidate cannot be used; the message says why (no secrets).
    """


@attr.s(frozen=True)
class Cluster:
    """
    An API server and how to talk to it.  Its repr holds no secret and no
    PEM data.

    :ivar server: the base URL, without a trailing slash
        (C{"https://10.96.0.1:443"}).
    :ivar source: where it was found, for logs (C{"in-cluster service
        account"}, C{"$KUBECONFIG (/path)"}, C{"/etc/kubernetes/admin.conf"}).
    :ivar identity: who we are to it, safe to log.
    :ivar auth: a L{BearerToken}, L{TokenFile} or L{BasicAuth}, or C{None}.
    :ivar ca_pem: the certificates to trust (only those), or C{None} for the
        system trust store.
    :ivar insecure: C{True} to skip verifying the server's certificate.
    :ivar client_cert_pem: the client certificate to present, or C{None}.
    :ivar client_key_pem: its private key, or C{None}.
    """

    server = attr.ib()
    source = attr.ib()
    identity = attr.ib()
    auth = attr.ib(default=None)
    ca_pem = attr.ib(default=None, repr=False)
    insecure = attr.ib(default=False)
    client_cert_pem = attr.ib(default=None, repr=False)
    client_key_pem = attr.ib(default=None, repr=False)

    def headers(self):
        """
        Runs on the reactor: with a L{TokenFile}, it may C{stat} and read that
        small local file.

        :return: the headers authenticating a request, for treq.
        """
        if self.auth is None:
            return {}
        return {"Authorization": [self.auth.authorization()]}

    def tls_policy(self):
        """
        :return: a L{TLSPolicy} for L{cri_shim.registries.tls.agent}: the server's
            certificate verified against C{ca_pem} (or the system trust store)
            and its name or IP address checked, unless C{insecure}; the client
            certificate presented, if any.
        """
        client = trust = None
        if self.client_cert_pem is not None:
            client = pem.private_certificate(self.client_cert_pem, self.client_key_pem)
        if self.ca_pem is not None:
            trust = pem.certificates(self.ca_pem)
        settings = Settings(trust, client, self.insecure)
        return TLSPolicy(lambda host, port: settings)


@attr.s(frozen=True)
class BearerToken:
    """
    A token that does not change.
    """

    token = attr.ib()  # Secret

    def authorization(self):
        """
        :return: the C{Authorization} header value.
        """
        return "Bearer " + self.token.reveal()


@attr.s(frozen=True)
class BasicAuth:
    """
    A username and password.
    """

    username = attr.ib()
    password = attr.ib()  # Secret

    def authorization(self):
        """
        :return: the C{Authorization} header value.
        """
        return basic_auth(self.username, self.password.reveal())


class TokenFile:
    """
    A token kept in a file that is replaced as it rotates (projected
    service-account tokens are renewed about hourly, by swapping in a new
    file).  Each use C{stat}s the file and reads it again when its inode,
    size or modification time changed, or when the last read is
    L{TOKEN_REREAD} seconds old (to catch a rewrite that kept all three;
    client-go reads such files once a minute).  If the file cannot be read
    again, the last token read is kept and a warning logged (once, until a
    read succeeds).

    :param path: the file.
    :param clock: returns monotonic seconds.
    :raise OSError: the file cannot be read.
    :raise ValueError: it holds no token.
    """

    log = Logger()

    def __init__(self, path, clock=time.monotonic):
        self.path = path
        self._clock = clock
        self._failing = False
        self._load()

    def __repr__(self):
        return "TokenFile({!r})".format(self.path)

    def _load(self):
        stamp = _stamp(os.stat(self.path))
        with open(self.path, "rb") as f:
            data = f.read()
        try:
            token = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ValueError("not UTF-8 text")
        if not token:
            raise ValueError("empty")
        self._token = Secret(token)
        self._stamp = stamp
        self._read_at = self._clock()

    def current(self):
        """
        :return: the token (a L{Secret}), read again if the file changed.
        """
        try:
            if (self._clock() - self._read_at >= TOKEN_REREAD
                    or _stamp(os.stat(self.path)) != self._stamp):
                self._load()
        except (OSError, ValueError) as e:
            if not self._failing:
                self.log.warn("cannot read the token file {path} again ({problem}); "
                              "keeping the last token read", path=self.path, problem=problem(e))
            self._failing = True
        else:
            self._failing = False
        return self._token

    def authorization(self):
        """
        :return: the C{Authorization} header value.
        """
        return "Bearer " + self.current().reveal()


def _stamp(status):
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def real(root, path):
    """
    :return: where C{path} (as seen from C{root}) is on this machine.
    """
    return os.path.join(root, os.path.abspath(path).lstrip("/"))


def read(root, path):
    """
    :return: the bytes of the small file C{path}, as seen from C{root}.
    """
    with open(real(root, path), "rb") as f:
        return f.read()


def problem(error):
    """
    :return: what went wrong, without echoing file contents.
    """
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return str(error)
