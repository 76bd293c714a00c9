# -*- test-case-name: tests.sync.test_kube -*-
"""
Find the Kubernetes API server and how to authenticate to it, the way
client-go would from inside a pod or on a node: the pod's service account,
else the first kubeconfig that works.

Secrets (tokens, passwords, private keys) never appear in a repr, an
identity, a warning or a log line.
"""

import base64
import binascii
import json
import os
import re
import time
from urllib.parse import urlsplit

import attr
import yaml
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet.ssl import (
    PrivateCertificate,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from cri_shim.model.config import Secret
from cri_shim.registries.tls import Unverified, certificates

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
IN_CLUSTER = "in-cluster service account"
#: The kubeconfigs tried after C{$KUBECONFIG}, in order, before
#: C{$HOME/.kube/config}.
KUBECONFIGS = (
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/kubelet.conf",
    "/etc/rancher/k3s/k3s.yaml",
)
#: Seconds after which a token file is read again even if it looks unchanged.
TOKEN_REREAD = 60.0

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_UNSUPPORTED = (("exec", "an exec credential plugin"), ("auth-provider", "an auth-provider"))


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
        :return: an L{IPolicyForHTTPS} for an C{Agent}: the server's
            certificate verified against C{ca_pem} (or the system trust store)
            and its name or IP address checked, unless C{insecure}; the client
            certificate presented, if any.
        """
        client = None
        if self.client_cert_pem is not None:
            client = PrivateCertificate.loadPEM(
                self.client_cert_pem + b"\n" + self.client_key_pem)
        if self.insecure:
            return _Policy(lambda host: Unverified(host, client))
        trust = None
        if self.ca_pem is not None:
            trust = trustRootFromCertificates(certificates(self.ca_pem))
        return _Policy(lambda host: optionsForClientTLS(
            host, trustRoot=trust, clientCertificate=client))


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
        raw = "{}:{}".format(self.username, self.password.reveal()).encode("utf-8")
        return "Basic " + base64.b64encode(raw).decode("ascii")


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
                              "keeping the last token read", path=self.path, problem=_problem(e))
            self._failing = True
        else:
            self._failing = False
        return self._token

    def authorization(self):
        """
        :return: the C{Authorization} header value.
        """
        return "Bearer " + self.current().reveal()


def find_cluster(environ, root="/", clock=time.monotonic):
    """
    Look for the API server, first that works wins:

      1. in a pod: C{$KUBERNETES_SERVICE_HOST} and C{$KUBERNETES_SERVICE_PORT}
         set and the service account's token mounted (its C{ca.crt} and
         C{namespace} beside it);
      2. each file of the colon-separated C{$KUBECONFIG} in turn (client-go
         would merge them; here each is a whole kubeconfig, so in practice
         the first existing one; relative paths from the current folder);
      3. the files of L{KUBECONFIGS} in turn;
      4. C{$HOME/.kube/config} (C{/root/.kube/config} when C{$HOME} is unset).

    A candidate whose file does not exist is passed over silently; one that
    exists but cannot be used is passed over with a warning naming it and
    the problem.  A kubeconfig is read at its C{current-context}.

    :param environ: the environment variables.
    :param root: where the filesystem starts (tests build fake trees); paths
        in logs and sources are as seen from it.
    :param clock: returns monotonic seconds, for L{TokenFile}s.
    :return: C{(cluster, warnings)}: the L{Cluster} or C{None}, and the
        warning strings (for the caller to log), including one when the found
        cluster's certificate will not be verified.
    """
    warnings = []
    for source, load in _candidates(environ, root, clock):
        try:
            cluster = load(warnings)
        except _Missing:
            continue
        except _Broken as e:
            warnings.append("{}: {}; skipped".format(source, e))
            continue
        if cluster.insecure:
            warnings.append("{}: the certificate of {} will not be verified "
                            "(insecure-skip-tls-verify)".format(source, cluster.server))
        return cluster, warnings
    return None, warnings


class _Missing(Exception):
    """
    The candidate's file does not exist.
    """


class _Broken(Exception):
    """
    The candidate cannot be used; the message says why (no secrets).
    """


def _candidates(environ, root, clock):
    """
    :return: C{(source, load)} pairs, C{load(warnings)} returning a
        L{Cluster} or raising L{_Missing} or L{_Broken}.
    """
    if environ.get("KUBERNETES_SERVICE_HOST") and environ.get("KUBERNETES_SERVICE_PORT"):
        yield IN_CLUSTER, lambda warnings: _in_cluster(environ, root, clock, warnings)
    files = [("$KUBECONFIG ({})".format(path), path)
             for path in environ.get("KUBECONFIG", "").split(os.pathsep) if path]
    home = environ.get("HOME") or "/root"
    files += [(path, path) for path in KUBECONFIGS + (home + "/.kube/config",)]
    tried = set()
    for source, path in files:
        path = os.path.abspath(path)
        if path not in tried:
            tried.add(path)
            yield source, lambda warnings, path=path, source=source: _kubeconfig(
                path, source, root, clock)


def _in_cluster(environ, root, clock, warnings):
    host = environ["KUBERNETES_SERVICE_HOST"]
    if ":" in host:
        host = "[{}]".format(host)
    token_path = SERVICE_ACCOUNT + "/token"
    try:
        token = TokenFile(_real(root, token_path), clock)
    except (FileNotFoundError, NotADirectoryError):
        raise _Missing()
    except (OSError, ValueError) as e:
        raise _Broken("token {}: {}".format(token_path, _problem(e)))
    ca_pem = None
    ca_path = SERVICE_ACCOUNT + "/ca.crt"
    try:
        ca_pem = _ca(_read(root, ca_path))
    except (OSError, _Broken) as e:
        warnings.append("{}: cannot use the CA {} ({}); verifying the API server against the "
                        "system trust store".format(IN_CLUSTER, ca_path, _problem(e)))
    try:
        namespace = _read(root, SERVICE_ACCOUNT + "/namespace").decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        namespace = ""
    return Cluster(
        server="https://{}:{}".format(host, environ["KUBERNETES_SERVICE_PORT"]),
        source=IN_CLUSTER, identity=_service_account(namespace, token.current().reveal()),
        auth=token, ca_pem=ca_pem)


def _service_account(namespace, token):
    """
    :return: the identity of the service account C{token} (a JWT) belongs
        to: its name from the C{sub} claim (C{system:serviceaccount:NS:NAME})
        or the C{kubernetes.io} claim, its namespace from C{namespace} or the
        token.
    """
    claims = _jwt_claims(token)
    subject = claims.get("sub")
    parts = subject.split(":") if isinstance(subject, str) else []
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"] and all(parts[2:]):
        return "service account {}/{}".format(namespace or parts[2], parts[3])
    kubernetes = claims.get("kubernetes.io")
    if isinstance(kubernetes, dict):
        account = kubernetes.get("serviceaccount")
        name = account.get("name") if isinstance(account, dict) else None
        namespace = namespace or kubernetes.get("namespace")
        if isinstance(name, str) and name and isinstance(namespace, str) and namespace:
            return "service account {}/{}".format(namespace, name)
    return "the pod's service account"


def _jwt_claims(token):
    """
    :return: the payload of the JWT C{token}, or C{{}} if it is not one.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _kubeconfig(path, source, root, clock):
    try:
        data = _read(root, path)
    except (FileNotFoundError, NotADirectoryError):
        raise _Missing()
    except OSError as e:
        raise _Broken(_problem(e))
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as e:
        # Not str(e): its snippet of the file could show a token.
        mark = getattr(e, "problem_mark", None)
        raise _Broken("not valid YAML" + (
            "" if mark is None else " (line {})".format(mark.line + 1)))
    if not isinstance(document, dict):
        raise _Broken("not a kubeconfig")
    context_name = document.get("current-context")
    if not context_name or not isinstance(context_name, str):
        raise _Broken("no current-context")
    context = _entry(document, "context", context_name)
    cluster_name = _string(context, "cluster", "context")
    if cluster_name is None:
        raise _Broken("context {!r} names no cluster".format(context_name))
    cluster = _entry(document, "cluster", cluster_name)
    user_name = _string(context, "user", "context")
    user = {} if user_name is None else _entry(document, "user", user_name)
    files = _Files(root, os.path.dirname(path))

    server = _string(cluster, "server", "cluster")
    if server is None:
        raise _Broken("cluster {!r} has no server".format(cluster_name))
    address = urlsplit(server)
    if address.scheme not in ("https", "http") or not address.netloc:
        raise _Broken("server {!r} is not an http(s) URL".format(server))
    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise _Broken("insecure-skip-tls-verify is not true or false")
    ca_pem = files.pem(cluster, "certificate-authority", "cluster")
    if ca_pem is not None:
        if insecure:
            raise _Broken("both insecure-skip-tls-verify and a certificate authority "
                          "are set (client-go refuses this)")
        ca_pem = _ca(ca_pem)

    for key, what in _UNSUPPORTED:
        if user.get(key):
            raise _Broken("user {!r} authenticates with {}, which is not supported".format(
                user_name, what))
    ways = []
    auth = None
    token = _string(user, "token", "user")
    token_file = files.path(user, "tokenFile", "user")
    username = _string(user, "username", "user")
    if username is not None and (token or token_file):
        raise _Broken("user {!r} has both a token and a username/password".format(user_name))
    if token_file is not None:
        try:
            auth = TokenFile(files.real(token_file), clock)
        except (OSError, ValueError) as e:
            raise _Broken("tokenFile {}: {}".format(token_file, _problem(e)))
        ways.append("token file {}".format(token_file))
    elif token is not None:
        auth = BearerToken(Secret(token))
        ways.append("token")
    elif username is not None:
        auth = BasicAuth(username, Secret(_string(user, "password", "user") or ""))
        ways.append("basic auth as {!r}".format(username))
    cert_pem = files.pem(user, "client-certificate", "user")
    key_pem = files.pem(user, "client-key", "user")
    if (cert_pem is None) != (key_pem is None):
        raise _Broken("user {!r} has a client certificate or key without the other".format(
            user_name))
    if cert_pem is not None:
        cert_pem, key_pem, subject = _client_certificate(cert_pem, key_pem)
        ways.append("client certificate " + subject)
    if user_name is None:
        identity = "anonymous"
    else:
        identity = "user {!r} ({})".format(user_name, ", ".join(ways) or "no credentials")
    return Cluster(
        server=server.rstrip("/"), source=source, identity=identity, auth=auth, ca_pem=ca_pem,
        insecure=insecure, client_cert_pem=cert_pem, client_key_pem=key_pem)


def _entry(document, kind, name):
    """
    :return: the settings of the C{kind} (C{"context"}, C{"cluster"} or
        C{"user"}) called C{name} in a kubeconfig.
    """
    entries = document.get(kind + "s")
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, dict) and entry.get("name") == name:
            settings = entry.get(kind) or {}
            if not isinstance(settings, dict):
                raise _Broken("{} {!r} is not a mapping".format(kind, name))
            return settings
    raise _Broken("{} {!r} not found".format(kind, name))


def _string(settings, key, kind):
    """
    :return: the string C{settings[key]}, or C{None} if absent or empty.
    """
    value = settings.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Broken("{} {} is not a string".format(kind, key))
    return value


class _Files:
    """
    Files a kubeconfig names: relative paths are in its folder, and every
    path is under C{root}.
    """

    def __init__(self, root, folder):
        self._root = root
        self._folder = folder

    def path(self, settings, key, kind):
        """
        :return: the path in C{settings[key]}, made absolute, or C{None}.
        """
        value = _string(settings, key, kind)
        return None if value is None else os.path.join(self._folder, value)

    def real(self, path):
        """
        :return: where C{path} is on this machine.
        """
        return _real(self._root, path)

    def pem(self, settings, key, kind):
        """
        :return: the bytes of C{settings[key + "-data"]} (base64), else of
            the file C{settings[key]} names, else C{None}.
        """
        data = _string(settings, key + "-data", kind)
        if data is not None:
            try:
                return base64.b64decode(data, validate=True)
            except binascii.Error:
                raise _Broken("{}-data is not valid base64".format(key))
        path = self.path(settings, key, kind)
        if path is None:
            return None
        try:
            return _read(self._root, path)
        except OSError as e:
            raise _Broken("{} {}: {}".format(key, path, _problem(e)))


def _ca(data):
    """
    :return: the certificates in C{data}, as PEM.
    """
    pem = b"".join(_blocks(data, lambda label: label == b"CERTIFICATE"))
    if not pem:
        raise _Broken("no certificate in the certificate authority")
    try:
        certificates(pem)
    except crypto.Error:
        raise _Broken("the certificate authority cannot be read")
    return pem


def _client_certificate(cert_data, key_data):
    """
    :return: C{(certificate PEM, key PEM, subject)} from the client
        certificate and key (which may be one file holding both, as the
        kubelet's C{kubelet-client-current.pem}).
    """
    cert_pem = _blocks(cert_data, lambda label: label == b"CERTIFICATE")
    key_pem = _blocks(key_data, lambda label: label.endswith(b"PRIVATE KEY"))[:1]
    if not cert_pem:
        raise _Broken("no certificate in the client certificate")
    if not key_pem:
        raise _Broken("no private key in the client key")
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem[0])
    except ValueError:
        raise _Broken("the client certificate cannot be read")
    try:
        key = serialization.load_pem_private_key(key_pem[0], password=None)
    except TypeError:
        raise _Broken("the client key is encrypted, which is not supported")
    except (ValueError, UnsupportedAlgorithm):
        raise _Broken("the client key cannot be read")
    if _public(key) != _public(certificate):
        raise _Broken("the client key does not match the client certificate")
    names = ["{}={}".format(short, attribute.value)
             for short, oid in (("CN", NameOID.COMMON_NAME), ("O", NameOID.ORGANIZATION_NAME))
             for attribute in certificate.subject.get_attributes_for_oid(oid)]
    return b"".join(cert_pem), key_pem[0], ", ".join(names) or "without a subject"


def _public(holder):
    """
    :return: the public key of a certificate or private key, as DER.
    """
    return holder.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _blocks(data, wanted):
    """
    :return: the PEM blocks in C{data} whose label is C{wanted}, each ending
        in a newline.
    """
    return [match.group(0) + b"\n" for match in _PEM.finditer(data) if wanted(match.group(1))]


def _stamp(status):
    return (status.st_ino, status.st_size, status.st_mtime_ns)


def _real(root, path):
    return os.path.join(root, os.path.abspath(path).lstrip("/"))


def _read(root, path):
    with open(_real(root, path), "rb") as f:
        return f.read()


def _problem(error):
    """
    :return: what went wrong, without echoing file contents.
    """
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return str(error)


@implementer(IPolicyForHTTPS)
class _Policy:
    """
    One client connection creator per host, made by C{make(host)}.
    """

    def __init__(self, make):
        self._make = make
        self._creators = {}

    def creatorForNetloc(self, hostname, port):
        host = hostname.decode("ascii") if isinstance(hostname, bytes) else hostname
        creator = self._creators.get(host)
        if creator is None:
            creator = self._creators[host] = self._make(host)
        return creator
