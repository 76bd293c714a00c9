# -*- test-case-name: tests.sync.test_kube -*-
"""
Find the Kubernetes API server and how to authenticate to it, the way
client-go would from inside a pod or on a node: the pod's service account,
else the first kubeconfig that works (read by L{cri_shim.sync.kubeconfig}).

Secrets (tokens, passwords, private keys) never appear in a warning.
"""

import base64
import json
import os
import time

from cri_shim.registries import pem
from cri_shim.sync import kubeconfig
from cri_shim.sync.cluster import Broken, Cluster, Missing, TokenFile, problem, read, real

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
IN_CLUSTER = "in-cluster service account"
#: The kubeconfigs tried after C{$KUBECONFIG}, in order, before
#: C{$HOME/.kube/config}.
KUBECONFIGS = (
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/kubelet.conf",
    "/etc/rancher/k3s/k3s.yaml",
)


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
        except Missing:
            continue
        except Broken as e:
            warnings.append("{}: {}; skipped".format(source, e))
            continue
        if cluster.insecure:
            warnings.append("{}: the certificate of {} will not be verified "
                            "(insecure-skip-tls-verify)".format(source, cluster.server))
        return cluster, warnings
    return None, warnings


def _candidates(environ, root, clock):
    """
    :return: C{(source, load)} pairs, C{load(warnings)} returning a
        L{Cluster} or raising L{Missing} or L{Broken}.
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
            yield source, lambda warnings, path=path, source=source: kubeconfig.load(
                path, source, root, clock)


def _in_cluster(environ, root, clock, warnings):
    host = environ["KUBERNETES_SERVICE_HOST"]
    if ":" in host:
        host = "[{}]".format(host)
    token_path = SERVICE_ACCOUNT + "/token"
    try:
        token = TokenFile(real(root, token_path), clock)
    except (FileNotFoundError, NotADirectoryError):
        raise Missing()
    except (OSError, ValueError) as e:
        raise Broken("token {}: {}".format(token_path, problem(e)))
    ca_pem = None
    ca_path = SERVICE_ACCOUNT + "/ca.crt"
    try:
        ca_pem = pem.authority(pem.read_file(real(root, ca_path), ca_path), ca_path)
    except pem.PEMError as e:
        warnings.append("{}: cannot use the CA ({}); verifying the API server against the "
                        "system trust store".format(IN_CLUSTER, e))
    try:
        namespace = read(root, SERVICE_ACCOUNT + "/namespace").decode("utf-8").strip()
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
