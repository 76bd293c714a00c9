# -*- test-case-name: tests.sync.test_kube -*-
"""
Read one kubeconfig the way client-go does, at its C{current-context}: the
server, how to verify it (inline or file certificate authority, or
C{insecure-skip-tls-verify}), and the user's login (token, token file,
Basic, client certificate: from files, it is read again as they rotate,
see L{cri_shim.sync.cluster.ClientFiles}).  Certificates and keys go through
L{cri_shim.registries.pem}.  Errors never quote a credential.
"""

import base64
import binascii
import os
from urllib.parse import urlsplit

import yaml

from cri_shim.model.config import Secret
from cri_shim.registries import pem
from cri_shim.sync.cluster import (
    BasicAuth,
    BearerToken,
    Broken,
    ClientFiles,
    Cluster,
    Missing,
    TokenFile,
    problem,
    read,
    real,
)

_UNSUPPORTED = (("exec", "an exec credential plugin"), ("auth-provider", "an auth-provider"))


def load(path, source, root, clock):
    """
    Read the kubeconfig C{path} at its C{current-context}.

    :param source: where it was found, for the L{Cluster}.
    :param root: where the filesystem starts.
    :param clock: returns monotonic seconds, for L{TokenFile}s.
    :return: the L{Cluster}.
    :raise Missing: the file does not exist.
    :raise Broken: it cannot be used; the message says why.
    """
    try:
        data = read(root, path)
    except (FileNotFoundError, NotADirectoryError):
        raise Missing()
    except OSError as e:
        raise Broken(problem(e))
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as e:
        # Not str(e): its snippet of the file could show a token.
        mark = getattr(e, "problem_mark", None)
        raise Broken("not valid YAML" + (
            "" if mark is None else " (line {})".format(mark.line + 1)))
    if not isinstance(document, dict):
        raise Broken("not a kubeconfig")
    context_name = document.get("current-context")
    if not context_name or not isinstance(context_name, str):
        raise Broken("no current-context")
    context = _entry(document, "context", context_name)
    cluster_name = _string(context, "cluster", "context")
    if cluster_name is None:
        raise Broken("context {!r} names no cluster".format(context_name))
    cluster = _entry(document, "cluster", cluster_name)
    user_name = _string(context, "user", "context")
    user = {} if user_name is None else _entry(document, "user", user_name)
    files = _Files(root, os.path.dirname(path))

    server = _string(cluster, "server", "cluster")
    if server is None:
        raise Broken("cluster {!r} has no server".format(cluster_name))
    address = urlsplit(server)
    if address.scheme not in ("https", "http") or not address.netloc:
        raise Broken("server {!r} is not an http(s) URL".format(server))
    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise Broken("insecure-skip-tls-verify is not true or false")
    ca_pem = files.pem(cluster, "certificate-authority", "cluster")
    if ca_pem is not None:
        if insecure:
            raise Broken("both insecure-skip-tls-verify and a certificate authority "
                          "are set (client-go refuses this)")
        ca_pem = _checked(pem.authority, ca_pem, "the certificate authority")

    for key, what in _UNSUPPORTED:
        if user.get(key):
            raise Broken("user {!r} authenticates with {}, which is not supported".format(
                user_name, what))
    ways = []
    auth = None
    token = _string(user, "token", "user")
    token_file = files.path(user, "tokenFile", "user")
    username = _string(user, "username", "user")
    if username is not None and (token or token_file):
        raise Broken("user {!r} has both a token and a username/password".format(user_name))
    if token_file is not None:
        try:
            auth = TokenFile(files.real(token_file), clock)
        except (OSError, ValueError) as e:
            raise Broken("tokenFile {}: {}".format(token_file, problem(e)))
        ways.append("token file {}".format(token_file))
    elif token is not None:
        auth = BearerToken(Secret(token))
        ways.append("token")
    elif username is not None:
        auth = BasicAuth(username, Secret(_string(user, "password", "user") or ""))
        ways.append("basic auth as {!r}".format(username))
    cert_path, cert_label, cert_data = files.source(user, "client-certificate", "user")
    key_path, key_label, key_data = files.source(user, "client-key", "user")
    if (cert_data is None) != (key_data is None):
        raise Broken("user {!r} has a client certificate or key without the other".format(
            user_name))
    cert_pem = key_pem = client_files = None
    if cert_data is not None:
        cert_pem, key_pem, subject = _checked(pem.client_pair, cert_data, key_data)
        ways.append("client certificate " + subject)
        if cert_path is not None or key_path is not None:
            client_files = ClientFiles(cert_path, key_path, (cert_label, key_label),
                                       (cert_data, key_data), (cert_pem, key_pem))
    if user_name is None:
        identity = "anonymous"
    else:
        identity = "user {!r} ({})".format(user_name, ", ".join(ways) or "no credentials")
    return Cluster(
        server=server.rstrip("/"), source=source, identity=identity, auth=auth, ca_pem=ca_pem,
        insecure=insecure, client_cert_pem=cert_pem, client_key_pem=key_pem,
        client_files=client_files)


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
                raise Broken("{} {!r} is not a mapping".format(kind, name))
            return settings
    raise Broken("{} {!r} not found".format(kind, name))


def _string(settings, key, kind):
    """
    :return: the string C{settings[key]}, or C{None} if absent or empty.
    """
    value = settings.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Broken("{} {} is not a string".format(kind, key))
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
        return real(self._root, path)

    def pem(self, settings, key, kind):
        """
        :return: the bytes of C{settings[key + "-data"]} (base64), else of
            the file C{settings[key]} names, else C{None}.
        """
        return self.source(settings, key, kind)[2]

    def source(self, settings, key, kind):
        """
        :return: C{(where the file is on this machine, how errors name it,
            its bytes)} for C{settings[key]}; C{(None, label, bytes)} for
            C{settings[key + "-data"]} (base64), which wins; C{(None, None,
            None)} when neither is set.
        """
        data = _string(settings, key + "-data", kind)
        if data is not None:
            try:
                return None, key + "-data", base64.b64decode(data, validate=True)
            except binascii.Error:
                raise Broken("{}-data is not valid base64".format(key))
        path = self.path(settings, key, kind)
        if path is None:
            return None, None, None
        label = "{} {}".format(key, path)
        real = self.real(path)
        return real, label, _checked(pem.read_file, real, label)


def _checked(check, *args):
    """
    :return: C{check(*args)}, a L{pem} reader.
    :raise Broken: saying why it refused.
    """
    try:
        return check(*args)
    except pem.PEMError as e:
        raise Broken(str(e))
