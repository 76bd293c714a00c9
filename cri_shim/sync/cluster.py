# -*- test-case-name: tests.sync.test_kube -*-
"""
An API server found, and how to authenticate to it: the L{Cluster} value
(server, identity, TLS settings, its policy) and its kinds of login (a fixed
token, a rotating token file, Basic, a client certificate in files kubelet
rotates); and how discovery says a candidate is missing or broken.

Secrets (tokens, passwords, private keys) never appear in a repr, an
identity, a warning or a log line.
"""

import os
import time

import attr
from twisted.internet.defer import Deferred
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
    :ivar client_files: the L{ClientFiles} they were read from, which
        replace them as they rotate; C{None} when they are fixed (inline in
        the kubeconfig) or absent.
    """

    server = attr.ib()
    source = attr.ib()
    identity = attr.ib()
    auth = attr.ib(default=None)
    ca_pem = attr.ib(default=None, repr=False)
    insecure = attr.ib(default=False)
    client_cert_pem = attr.ib(default=None, repr=False)
    client_key_pem = attr.ib(default=None, repr=False)
    client_files = attr.ib(default=None)

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
            certificate presented, if any: with L{client_files}, the one they
            held when last read (connections are made anew when it changes).
        """
        trust = None if self.ca_pem is None else pem.certificates(self.ca_pem)
        files = self.client_files
        if files is not None:
            return TLSPolicy(lambda host, port: Settings(trust, files.certificate(),
                                                         self.insecure),
                             lambda: files.generation)
        client = None
        if self.client_cert_pem is not None:
            client = pem.private_certificate(self.client_cert_pem, self.client_key_pem)
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


class ClientFiles:
    """
    A client certificate and its key kept in files that are replaced as
    they rotate: kubelet's C{kubelet-client-current.pem} is a symbolic link
    it points at each new pair.  L{refresh} C{stat}s them in a thread and
    reads them again there when the inode, size or modification time of
    either changed (or always, when forced: after a 401); if they cannot be
    read, or hold no usable pair, the last pair read stays in use and a
    warning is logged (once, until a read succeeds).  One check runs at a
    time; callers meanwhile share its outcome.

    :param cert_path: the certificate's file, or C{None} (inline, fixed).
    :param key_path: the key's file (may be the same), or C{None}.
    :param labels: how errors name each (C{"client-certificate /path"}).
    :param data: C{(certificate bytes, key bytes)} as read at discovery.
    :param pair: C{(certificate PEM, key PEM)} checked from them.
    """

    log = Logger()

    def __init__(self, cert_path, key_path, labels, data, pair):
        self.cert_path = cert_path
        self.key_path = key_path
        self._labels = labels
        self._data = data
        self.pair = pair
        #: Counts the pairs read so far, for the TLS policy.
        self.generation = 0
        self._certificate = None
        self._stamps = None
        self._check = None
        self._failing = False

    def __repr__(self):
        return "ClientFiles({!r}, {!r})".format(self.cert_path, self.key_path)

    def certificate(self):
        """
        :return: the C{PrivateCertificate} of the current pair.
        """
        if self._certificate is None or self._certificate[0] != self.generation:
            self._certificate = (self.generation, pem.private_certificate(*self.pair))
        return self._certificate[1]

    def refresh(self, run, force=False):
        """
        Check the files, read them again if they changed.  Runs on the
        reactor; the files are touched only in C{run}'s thread.

        :param run: C{run(f, *args)} runs the blocking C{f} in a thread and
            returns a Deferred of its result (C{deferToThreadPool} bound to
            a reactor and a pool).
        :param force: read them even if they look unchanged.
        :return: a Deferred firing with whether the pair changed.
        """
        if self._check is not None:
            forced, shared = self._check
            follower = _follow(shared)
            if force and not forced:
                follower.addCallback(lambda changed: self.refresh(run, True).addCallback(
                    lambda again: changed or again))
            return follower
        shared = run(_thd_read, self.cert_path, self.key_path, self._labels, self._data,
                     None if force else self._stamps)
        self._check = (force, shared)
        shared.addBoth(self._checked)
        return _follow(shared)

    def _checked(self, result):
        self._check = None
        if not isinstance(result, tuple):
            if not result.check(OSError, pem.PEMError):
                self.log.failure("checking the client certificate failed", result)
            elif not self._failing:
                self.log.warn("cannot read the client certificate again ({problem}); keeping "
                              "the last one read", problem=problem(result.value))
            self._failing = True
            return False
        self._failing = False
        self._stamps, pair = result
        if pair is None or pair[:2] == self.pair:
            return False
        self.pair = pair[:2]
        self.generation += 1
        self.log.info("client certificate {path} changed: now {subject}",
                      path=self.cert_path or self.key_path, subject=pair[2])
        return True


def _follow(shared):
    """
    :return: a Deferred firing with C{shared}'s result, which stays
        C{shared}'s (cancelling it leaves C{shared} alone).
    """
    follower = Deferred()

    def done(result):
        follower.callback(result)
        return result
    shared.addCallback(done)
    return follower


def _thd_read(cert_path, key_path, labels, data, stamps):
    """
    Blocking: in a thread.  C{stat} the files; unless their stamps are
    C{stamps}, read them (bounded, not following into a FIFO or device).

    :return: C{(stamps, (certificate PEM, key PEM, subject) or None)}.
    :raise OSError, pem.PEMError: they cannot be read or used.
    """
    paths = (cert_path, key_path)
    now = tuple(None if path is None else _stamp(os.stat(path)) for path in paths)
    if now == stamps:
        return now, None
    read = {}
    for path, label in zip(paths, labels):
        if path is not None and path not in read:
            read[path] = pem.read_file(path, label)
    cert, key = (data[i] if path is None else read[path] for i, path in enumerate(paths))
    return now, pem.client_pair(cert, key, *labels)


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
