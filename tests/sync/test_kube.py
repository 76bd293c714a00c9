"""
Tests for L{cri_shim.sync.kube}, L{cri_shim.sync.kubeconfig} and
L{cri_shim.sync.cluster}: finding the API server in fake filesystem trees
(in-cluster service account, kubeconfigs, their order), every kubeconfig
authentication form, token rotation, secrets kept out of reprs and warnings,
and TLS against a real HTTPS server in-process.
"""

import base64
import json
import os

import yaml
from OpenSSL import SSL
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.ssl import Certificate, PrivateCertificate, VerificationError
from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool, ResponseFailed, ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import Site

from cri_shim.model.config import Secret
from cri_shim.registries.tls import agent
from cri_shim.sync import cluster as kube_cluster
from cri_shim.sync.cluster import BasicAuth, BearerToken, Cluster, TokenFile
from cri_shim.sync.kube import find_cluster
from cri_shim.testing import make_ca, make_cert

TOKEN = "s3cr3t-token-value"
PASSWORD = "hunter2-password"
SA = "/var/run/secrets/kubernetes.io/serviceaccount"
IN_CLUSTER_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}

CA = make_ca()
ADMIN = make_cert(CA, common_name="kubernetes-admin", organization="system:masters")
NODE = make_cert(CA, common_name="system:node:node1", organization="system:nodes")
SERVER = make_cert(CA, ["127.0.0.1"], common_name="kube-apiserver")


def b64(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def jwt(claims):
    """
    :return: an (unsigned) JWT carrying C{claims}.
    """
    def part(value):
        raw = json.dumps(value).encode("utf-8")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    return "{}.{}.c2lnbmF0dXJl".format(part({"alg": "RS256", "kid": "k"}), part(claims))


SA_TOKEN = jwt({
    "sub": "system:serviceaccount:kube-system:image-cri-shim",
    "kubernetes.io": {"namespace": "kube-system",
                      "serviceaccount": {"name": "image-cri-shim", "uid": "1"}},
})


def kubeconfig(server="https://192.168.1.10:6443", cluster=None, user=None, user_name="admin"):
    """
    :return: the YAML of a kubeconfig whose current context uses C{cluster}
        and C{user} (settings beside C{server}).
    """
    settings = {"server": server}
    settings.update(cluster or {})
    document = {
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": settings}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": user_name}}],
        "users": [{"name": user_name, "user": user or {}}],
    }
    return yaml.safe_dump(document)


class TreeMixin:
    """
    A fake filesystem tree under a temporary folder.
    """

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.environ = {"HOME": "/home/me"}
        self.clock = Clock()

    def real(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def write(self, path, content):
        """
        Write C{content} (text or bytes) to C{path} in the tree.
        """
        real = self.real(path)
        os.makedirs(os.path.dirname(real), exist_ok=True)
        with open(real, "wb") as f:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)

    def service_account(self, token=SA_TOKEN, namespace="kube-system", ca=True):
        self.write(SA + "/token", token)
        if namespace is not None:
            self.write(SA + "/namespace", namespace)
        if ca:
            self.write(SA + "/ca.crt", CA[0])

    def find(self):
        return find_cluster(self.environ, root=self.root, clock=self.clock.seconds)

    def found(self):
        """
        :return: the cluster found, asserting there was one and no warning.
        """
        cluster, warnings = self.find()
        self.assertEqual(warnings, [])
        self.assertIsNotNone(cluster)
        return cluster

    def skipped(self, *problems):
        """
        Assert no cluster is found, with warnings containing C{problems}.
        """
        cluster, warnings = self.find()
        self.assertIsNone(cluster)
        self.assertEqual(len(warnings), len(problems), warnings)
        for warning, problem in zip(warnings, problems):
            self.assertIn(problem, warning)
            self.assertTrue(warning.endswith("; skipped"), warning)
        return warnings


class InClusterTests(TreeMixin, SynchronousTestCase):
    def setUp(self):
        TreeMixin.setUp(self)
        self.environ.update(IN_CLUSTER_ENV)

    def test_found(self):
        """
        With the service variables set and the token mounted, the service
        account is used: the service's address, its CA, its token.
        """
        self.service_account()
        cluster = self.found()
        self.assertEqual(cluster.server, "https://10.96.0.1:443")
        self.assertEqual(cluster.source, "in-cluster service account")
        self.assertEqual(cluster.identity, "service account kube-system/image-cri-shim")
        self.assertEqual(cluster.ca_pem, CA[0])
        self.assertFalse(cluster.insecure)
        self.assertIsInstance(cluster.auth, TokenFile)
        self.assertEqual(cluster.headers(), {"Authorization": ["Bearer " + SA_TOKEN]})

    def test_ipv6(self):
        """
        An IPv6 service host is put in brackets.
        """
        self.environ["KUBERNETES_SERVICE_HOST"] = "fd00:10:96::1"
        self.service_account()
        self.assertEqual(self.found().server, "https://[fd00:10:96::1]:443")

    def test_no_token(self):
        """
        Without a mounted token (no service account automount) the pod's
        environment is passed over silently.
        """
        self.write(SA + "/ca.crt", CA[0])
        self.assertEqual(self.find(), (None, []))

    def test_no_variables(self):
        """
        Without the service variables, a mounted token is not used.
        """
        del self.environ["KUBERNETES_SERVICE_PORT"]
        self.service_account()
        self.assertEqual(self.find(), (None, []))

    def test_empty_token(self):
        """
        An empty token file is skipped with a warning.
        """
        self.service_account(token="\n")
        self.skipped("in-cluster service account: token {}/token: empty".format(SA))

    def test_no_namespace_file(self):
        """
        Without the namespace file, the namespace comes from the token.
        """
        self.service_account(namespace=None)
        self.assertEqual(self.found().identity, "service account kube-system/image-cri-shim")

    def test_namespace_from_file(self):
        """
        The namespace file names the namespace.
        """
        self.service_account(namespace="other\n")
        self.assertEqual(self.found().identity, "service account other/image-cri-shim")

    def test_kubernetes_claim(self):
        """
        Without a C{sub} claim, the name and namespace come from the
        C{kubernetes.io} claim.
        """
        self.service_account(namespace=None, token=jwt({"kubernetes.io": {
            "namespace": "ns", "serviceaccount": {"name": "shim"}}}))
        self.assertEqual(self.found().identity, "service account ns/shim")

    def test_opaque_token(self):
        """
        A token that is not a readable JWT still works, with a vaguer
        identity.
        """
        self.service_account(token="not-a-jwt")
        cluster = self.found()
        self.assertEqual(cluster.identity, "the pod's service account")
        self.assertEqual(cluster.headers(), {"Authorization": ["Bearer not-a-jwt"]})

    def test_no_ca(self):
        """
        Without C{ca.crt}, the system trust store is used, with a warning.
        """
        self.service_account(ca=False)
        cluster, warnings = self.find()
        self.assertIsNone(cluster.ca_pem)
        self.assertEqual(len(warnings), 1)
        self.assertIn(SA + "/ca.crt", warnings[0])
        self.assertIn("system trust store", warnings[0])


class OrderTests(TreeMixin, SynchronousTestCase):
    """
    In-cluster beats C{$KUBECONFIG}, which beats admin.conf, kubelet.conf,
    k3s.yaml and then C{~/.kube/config}.
    """

    def place(self, path, address):
        self.write(path, kubeconfig(server="https://{}:6443".format(address),
                                    user={"token": TOKEN}))

    def place_all(self):
        self.place("/home/me/.kube/config", "10.0.0.6")
        self.place("/etc/rancher/k3s/k3s.yaml", "10.0.0.5")
        self.place("/etc/kubernetes/kubelet.conf", "10.0.0.4")
        self.place("/etc/kubernetes/admin.conf", "10.0.0.3")
        self.place("/opt/kc", "10.0.0.2")
        self.environ["KUBECONFIG"] = "/opt/kc"
        self.environ.update(IN_CLUSTER_ENV)
        self.service_account()

    def test_in_cluster_first(self):
        """
        The service account beats every kubeconfig.
        """
        self.place_all()
        self.assertEqual(self.found().server, "https://10.96.0.1:443")

    def test_kubeconfig_variable(self):
        """
        Next comes C{$KUBECONFIG}, named as such.
        """
        self.place_all()
        os.remove(self.real(SA + "/token"))
        cluster = self.found()
        self.assertEqual(cluster.server, "https://10.0.0.2:6443")
        self.assertEqual(cluster.source, "$KUBECONFIG (/opt/kc)")

    def test_kubeconfig_list(self):
        """
        C{$KUBECONFIG} may list several files; missing ones are passed over.
        """
        self.place("/opt/second", "10.0.0.9")
        self.environ["KUBECONFIG"] = "/opt/missing::/opt/second"
        cluster = self.found()
        self.assertEqual(cluster.server, "https://10.0.0.9:6443")
        self.assertEqual(cluster.source, "$KUBECONFIG (/opt/second)")

    def test_then_files(self):
        """
        Then admin.conf, kubelet.conf, k3s.yaml and C{$HOME/.kube/config}, in
        that order, each named by its path.
        """
        self.place_all()
        del self.environ["KUBERNETES_SERVICE_HOST"]
        os.remove(self.real("/opt/kc"))
        expected = [
            ("/etc/kubernetes/admin.conf", "10.0.0.3"),
            ("/etc/kubernetes/kubelet.conf", "10.0.0.4"),
            ("/etc/rancher/k3s/k3s.yaml", "10.0.0.5"),
            ("/home/me/.kube/config", "10.0.0.6"),
        ]
        for path, address in expected:
            cluster = self.found()
            self.assertEqual((cluster.source, cluster.server),
                             (path, "https://{}:6443".format(address)))
            os.remove(self.real(path))
        self.assertEqual(self.find(), (None, []))

    def test_home_unset(self):
        """
        With C{$HOME} unset, C{/root/.kube/config} is read.
        """
        del self.environ["HOME"]
        self.place("/root/.kube/config", "10.0.0.7")
        self.place("/home/me/.kube/config", "10.0.0.6")
        self.assertEqual(self.found().source, "/root/.kube/config")

    def test_nothing(self):
        """
        Nothing to find: no cluster, no warning.
        """
        self.assertEqual(self.find(), (None, []))

    def test_broken_skipped(self):
        """
        A broken candidate is skipped with a warning naming it, and the next
        one is used.
        """
        self.write("/etc/kubernetes/admin.conf", "{not yaml")
        self.place("/etc/kubernetes/kubelet.conf", "10.0.0.4")
        cluster, warnings = self.find()
        self.assertEqual(cluster.source, "/etc/kubernetes/kubelet.conf")
        self.assertEqual(warnings,
                         ["/etc/kubernetes/admin.conf: not valid YAML (line 1); skipped"])

    def test_same_file_once(self):
        """
        A file named both by C{$KUBECONFIG} and the default list is tried
        (and warned about) once.
        """
        self.write("/etc/kubernetes/admin.conf", "[]")
        self.environ["KUBECONFIG"] = "/etc/kubernetes/admin.conf"
        self.skipped("$KUBECONFIG (/etc/kubernetes/admin.conf): not a kubeconfig")

    def test_unreadable(self):
        """
        A candidate that exists but cannot be read is skipped with a warning.
        """
        os.makedirs(self.real("/etc/kubernetes/admin.conf"))
        self.skipped("/etc/kubernetes/admin.conf: Is a directory")


class KubeconfigMixin(TreeMixin):
    path = "/etc/kubernetes/admin.conf"

    def load(self, **kwargs):
        """
        :return: the cluster found from a kubeconfig made by
            C{kubeconfig(**kwargs)}.
        """
        self.write(self.path, kubeconfig(**kwargs))
        return self.found()


class AuthTests(KubeconfigMixin, SynchronousTestCase):
    """
    Every way a kubeconfig user authenticates.
    """

    def test_token(self):
        """
        A static token.
        """
        cluster = self.load(user={"token": TOKEN})
        self.assertEqual(cluster.auth, BearerToken(Secret(TOKEN)))
        self.assertEqual(cluster.headers(), {"Authorization": ["Bearer " + TOKEN]})
        self.assertEqual(cluster.identity, "user 'admin' (token)")

    def test_token_file(self):
        """
        A token file, relative to the kubeconfig's folder.
        """
        self.write("/etc/kubernetes/tokens/admin", TOKEN + "\n")
        cluster = self.load(user={"tokenFile": "tokens/admin"})
        self.assertEqual(cluster.headers(), {"Authorization": ["Bearer " + TOKEN]})
        self.assertEqual(cluster.identity,
                         "user 'admin' (token file /etc/kubernetes/tokens/admin)")

    def test_token_file_missing(self):
        """
        A token file that does not exist makes the kubeconfig unusable.
        """
        self.write(self.path, kubeconfig(user={"tokenFile": "/nowhere"}))
        self.skipped("tokenFile /nowhere: No such file or directory")

    def test_client_certificate_data(self):
        """
        A client certificate and key given inline.
        """
        cluster = self.load(user={"client-certificate-data": b64(ADMIN[0]),
                                  "client-key-data": b64(ADMIN[1])})
        self.assertEqual((cluster.client_cert_pem, cluster.client_key_pem), ADMIN)
        self.assertIsNone(cluster.client_files)
        self.assertIsNone(cluster.auth)
        self.assertEqual(cluster.headers(), {})
        self.assertEqual(cluster.identity, "user 'admin' (client certificate "
                                           "CN=kubernetes-admin, O=system:masters)")

    def test_client_certificate_files(self):
        """
        A client certificate and key in files, relative to the kubeconfig's
        folder.
        """
        self.write("/etc/kubernetes/pki/admin.crt", ADMIN[0])
        self.write("/etc/kubernetes/pki/admin.key", ADMIN[1])
        cluster = self.load(user={"client-certificate": "pki/admin.crt",
                                  "client-key": "pki/admin.key"})
        self.assertEqual((cluster.client_cert_pem, cluster.client_key_pem), ADMIN)
        files = cluster.client_files
        self.assertEqual((files.cert_path, files.key_path, files.pair),
                         (self.real("/etc/kubernetes/pki/admin.crt"),
                          self.real("/etc/kubernetes/pki/admin.key"), ADMIN))
        self.assertEqual(repr(files), "ClientFiles({!r}, {!r})".format(files.cert_path,
                                                                       files.key_path))

    def test_kubelet_combined_pem(self):
        """
        The kubelet's certificate and key in one file, named twice.
        """
        self.path = "/etc/kubernetes/kubelet.conf"
        pem = "/var/lib/kubelet/pki/kubelet-client-current.pem"
        self.write(pem, NODE[0] + NODE[1])
        cluster = self.load(user_name="default-auth",
                            user={"client-certificate": pem, "client-key": pem})
        self.assertEqual((cluster.client_cert_pem, cluster.client_key_pem), NODE)
        self.assertEqual(cluster.identity, "user 'default-auth' (client certificate "
                                           "CN=system:node:node1, O=system:nodes)")

    def test_token_and_certificate(self):
        """
        A token and a client certificate are both used.
        """
        cluster = self.load(user={"token": TOKEN, "client-certificate-data": b64(ADMIN[0]),
                                  "client-key-data": b64(ADMIN[1])})
        self.assertEqual(cluster.headers(), {"Authorization": ["Bearer " + TOKEN]})
        self.assertEqual(cluster.client_cert_pem, ADMIN[0])
        self.assertEqual(cluster.identity, "user 'admin' (token, client certificate "
                                           "CN=kubernetes-admin, O=system:masters)")

    def test_basic(self):
        """
        A username and password.
        """
        cluster = self.load(user={"username": "bob", "password": PASSWORD})
        self.assertEqual(cluster.auth, BasicAuth("bob", Secret(PASSWORD)))
        self.assertEqual(cluster.headers(),
                         {"Authorization": ["Basic " + b64("bob:" + PASSWORD)]})
        self.assertEqual(cluster.identity, "user 'admin' (basic auth as 'bob')")

    def test_no_credentials(self):
        """
        A user with no credentials sends none.
        """
        cluster = self.load(user={})
        self.assertIsNone(cluster.auth)
        self.assertEqual(cluster.headers(), {})
        self.assertEqual(cluster.identity, "user 'admin' (no credentials)")

    def test_anonymous(self):
        """
        A context naming no user is anonymous.
        """
        cluster = self.load(user_name="")
        self.assertEqual(cluster.headers(), {})
        self.assertEqual(cluster.identity, "anonymous")

    def test_exec_plugin(self):
        """
        An exec credential plugin is not supported: the file is skipped with
        a warning saying so.
        """
        self.write(self.path, kubeconfig(user={"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}}))
        self.skipped("/etc/kubernetes/admin.conf: user 'admin' authenticates with an exec "
                     "credential plugin, which is not supported")

    def test_auth_provider(self):
        """
        An auth-provider is not supported either.
        """
        self.write(self.path, kubeconfig(user={"auth-provider": {"name": "oidc"}}))
        self.skipped("authenticates with an auth-provider, which is not supported")

    def test_token_and_basic(self):
        """
        A token and a password together are refused, as client-go does.
        """
        self.write(self.path, kubeconfig(user={"token": TOKEN, "username": "bob",
                                               "password": PASSWORD}))
        self.skipped("has both a token and a username/password")

    def test_certificate_without_key(self):
        """
        A client certificate without its key is refused.
        """
        self.write(self.path, kubeconfig(user={"client-certificate-data": b64(ADMIN[0])}))
        self.skipped("has a client certificate or key without the other")

    def test_mismatched_key(self):
        """
        A client key that does not belong to the certificate is refused.
        """
        self.write(self.path, kubeconfig(user={"client-certificate-data": b64(ADMIN[0]),
                                               "client-key-data": b64(NODE[1])}))
        self.skipped("the client key does not match the client certificate")

    def test_no_key_in_key_file(self):
        """
        A client key file holding no private key is refused.
        """
        self.write(self.path, kubeconfig(user={"client-certificate-data": b64(ADMIN[0]),
                                               "client-key-data": b64(ADMIN[0])}))
        self.skipped("no private key in the client key")


class ClusterSettingsTests(KubeconfigMixin, SynchronousTestCase):
    """
    The cluster part of a kubeconfig, and broken kubeconfigs.
    """

    def test_server(self):
        """
        The server URL is kept without its trailing slash.
        """
        cluster = self.load(server="https://api.example.com:6443/")
        self.assertEqual(cluster.server, "https://api.example.com:6443")
        self.assertEqual(cluster.source, self.path)
        self.assertIsNone(cluster.ca_pem)
        self.assertFalse(cluster.insecure)

    def test_ca_file(self):
        """
        A CA file, relative to the kubeconfig's folder.
        """
        self.write("/etc/kubernetes/pki/ca.crt", CA[0])
        self.assertEqual(self.load(cluster={"certificate-authority": "pki/ca.crt"}).ca_pem, CA[0])

    def test_ca_data(self):
        """
        CA certificates given inline, a bundle of two.
        """
        other = make_ca("other")[0]
        cluster = self.load(cluster={"certificate-authority-data": b64(CA[0] + other)})
        self.assertEqual(cluster.ca_pem, CA[0] + other)

    def test_ca_data_wins(self):
        """
        Inline CA data overrides a CA file, as in client-go.
        """
        cluster = self.load(cluster={"certificate-authority-data": b64(CA[0]),
                                     "certificate-authority": "/missing.crt"})
        self.assertEqual(cluster.ca_pem, CA[0])

    def test_insecure(self):
        """
        C{insecure-skip-tls-verify} is honoured, with a warning.
        """
        self.write(self.path, kubeconfig(cluster={"insecure-skip-tls-verify": True}))
        cluster, warnings = self.find()
        self.assertTrue(cluster.insecure)
        self.assertEqual(warnings, [
            "/etc/kubernetes/admin.conf: the certificate of https://192.168.1.10:6443 will not "
            "be verified (insecure-skip-tls-verify)"])

    def test_insecure_with_ca(self):
        """
        Both insecure and a CA: refused, as client-go does.
        """
        self.write(self.path, kubeconfig(cluster={"insecure-skip-tls-verify": True,
                                                  "certificate-authority-data": b64(CA[0])}))
        self.skipped("both insecure-skip-tls-verify and a certificate authority are set")

    def test_insecure_not_boolean(self):
        """
        A string is not taken for C{true}.
        """
        self.write(self.path, kubeconfig(cluster={"insecure-skip-tls-verify": "false"}))
        self.skipped("insecure-skip-tls-verify is not true or false")

    def test_ca_missing(self):
        """
        A CA file that does not exist.
        """
        self.write(self.path, kubeconfig(cluster={"certificate-authority": "pki/ca.crt"}))
        self.skipped("certificate-authority /etc/kubernetes/pki/ca.crt: No such file or directory")

    def test_ca_not_certificate(self):
        """
        A CA that holds no certificate.
        """
        self.write(self.path, kubeconfig(cluster={"certificate-authority-data": b64("junk")}))
        self.skipped("no certificate in the certificate authority")

    def test_bad_base64(self):
        """
        Inline data that is not base64.
        """
        self.write(self.path, kubeconfig(cluster={"certificate-authority-data": "@@@"}))
        self.skipped("certificate-authority-data is not valid base64")

    def test_bad_server(self):
        """
        A server that is not an http(s) URL.
        """
        self.write(self.path, kubeconfig(server="192.168.1.10:6443"))
        self.skipped("server '192.168.1.10:6443' is not an http(s) URL")

    def test_no_server(self):
        """
        A cluster without a server.
        """
        document = yaml.safe_load(kubeconfig())
        del document["clusters"][0]["cluster"]["server"]
        self.write(self.path, yaml.safe_dump(document))
        self.skipped("cluster 'c' has no server")

    def test_no_current_context(self):
        """
        A kubeconfig without a current context.
        """
        document = yaml.safe_load(kubeconfig())
        del document["current-context"]
        self.write(self.path, yaml.safe_dump(document))
        self.skipped("/etc/kubernetes/admin.conf: no current-context; skipped")

    def test_missing_context(self):
        """
        A current context that is not defined.
        """
        document = yaml.safe_load(kubeconfig())
        document["current-context"] = "gone"
        self.write(self.path, yaml.safe_dump(document))
        self.skipped("context 'gone' not found")

    def test_missing_cluster(self):
        """
        A context whose cluster is not defined.
        """
        document = yaml.safe_load(kubeconfig())
        document["clusters"] = []
        self.write(self.path, yaml.safe_dump(document))
        self.skipped("cluster 'c' not found")

    def test_missing_user(self):
        """
        A context whose user is not defined.
        """
        document = yaml.safe_load(kubeconfig())
        del document["users"]
        self.write(self.path, yaml.safe_dump(document))
        self.skipped("user 'admin' not found")

    def test_empty(self):
        """
        An empty file.
        """
        self.write(self.path, "")
        self.skipped("not a kubeconfig")


class TokenFileTests(TreeMixin, SynchronousTestCase):
    """
    Token files are read again as they rotate.
    """

    def setUp(self):
        TreeMixin.setUp(self)
        self.environ.update(IN_CLUSTER_ENV)
        self.service_account(token="first")
        self.cluster = self.found()

    def authorization(self):
        return self.cluster.headers()["Authorization"][0]

    def test_rewritten(self):
        """
        A token file rewritten with a new token gives a new header.
        """
        self.assertEqual(self.authorization(), "Bearer first")
        self.write(SA + "/token", "the-second")
        self.assertEqual(self.authorization(), "Bearer the-second")

    def test_swapped(self):
        """
        A token swapped in the way the kubelet does (a new file behind a
        symbolic link), even of the same length, gives a new header.
        """
        folder = self.real(SA)
        os.remove(os.path.join(folder, "token"))
        for version, token in (("..v1", "first"), ("..v2", "other")):
            os.mkdir(os.path.join(folder, version))
            with open(os.path.join(folder, version, "token"), "w") as f:
                f.write(token)
        os.symlink("..v1", os.path.join(folder, "..data"))
        os.symlink("..data/token", os.path.join(folder, "token"))
        self.assertEqual(self.authorization(), "Bearer first")
        os.symlink("..v2", os.path.join(folder, "..tmp"))
        os.replace(os.path.join(folder, "..tmp"), os.path.join(folder, "..data"))
        self.assertEqual(self.authorization(), "Bearer other")

    def test_unchanged_stamp(self):
        """
        A rewrite keeping the inode, size and time is seen once the last read
        is a minute old.
        """
        path = self.real(SA + "/token")
        status = os.stat(path)
        with open(path, "w") as f:
            f.write("fresh")
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
        self.assertEqual(self.authorization(), "Bearer first")
        self.clock.advance(kube_cluster.TOKEN_REREAD - 1)
        self.assertEqual(self.authorization(), "Bearer first")
        self.clock.advance(1)
        self.assertEqual(self.authorization(), "Bearer fresh")

    def test_vanished(self):
        """
        If the file cannot be read again, the last token is kept and one
        warning logged (without the token) until it can.
        """
        events = []
        self.patch(TokenFile, "log", Logger(observer=events.append))
        os.remove(self.real(SA + "/token"))
        self.assertEqual(self.authorization(), "Bearer first")
        self.assertEqual(self.authorization(), "Bearer first")
        self.assertEqual(len(events), 1)
        message = formatEvent(events[0])
        self.assertIn("No such file or directory", message)
        self.assertNotIn("first", message)
        self.write(SA + "/token", "back")
        self.assertEqual(self.authorization(), "Bearer back")
        self.assertEqual(len(events), 1)

    def test_repr(self):
        """
        A token file's repr names the file only.
        """
        self.assertEqual(repr(self.cluster.auth), "TokenFile({!r})".format(
            self.real(SA + "/token")))


class SecretTests(KubeconfigMixin, SynchronousTestCase):
    """
    No token, password or key in a repr, an identity or a warning.
    """

    def assertHidden(self, text):
        for secret in (TOKEN, PASSWORD, ADMIN[1].decode("ascii").splitlines()[1]):
            self.assertNotIn(secret, text)

    def test_token(self):
        """
        A token is not shown.
        """
        cluster = self.load(user={"token": TOKEN, "client-certificate-data": b64(ADMIN[0]),
                                  "client-key-data": b64(ADMIN[1])})
        self.assertHidden(repr(cluster))
        self.assertHidden(cluster.identity)
        self.assertIn("<redacted>", repr(cluster))

    def test_password(self):
        """
        A password is not shown.
        """
        cluster = self.load(user={"username": "bob", "password": PASSWORD})
        self.assertHidden(repr(cluster))
        self.assertHidden(cluster.identity)

    def test_service_account(self):
        """
        The service account's token is not shown.
        """
        self.environ.update(IN_CLUSTER_ENV)
        self.service_account(token=TOKEN)
        cluster = self.found()
        self.assertHidden(repr(cluster))
        self.assertHidden(cluster.identity)

    def test_broken_yaml(self):
        """
        A YAML error is reported by line only, not by quoting the file.
        """
        self.write(self.path, "users:\n- user:\n    token: " + TOKEN + "\n  : [\n")
        warnings = self.skipped("not valid YAML")
        self.assertHidden(warnings[0])

    def test_broken_user(self):
        """
        Warnings about a broken user do not show its credentials.
        """
        self.write(self.path, kubeconfig(user={"token": TOKEN, "username": "bob",
                                               "password": PASSWORD}))
        self.assertHidden(self.skipped("a token and a username")[0])


class _APIServer(Resource):
    """
    Answers any GET carrying the expected token.
    """

    isLeaf = True

    def render_GET(self, request):
        if request.getHeader("authorization") != "Bearer " + TOKEN:
            request.setResponseCode(401)
            return b""
        return b'{"kind": "ConfigMap"}'


class _TrackingSite(Site):
    """
    A site that knows when each of its connections is closed.

    :ivar lost: a Deferred per connection, fired when it is closed.
    """

    def __init__(self, resource):
        Site.__init__(self, resource)
        self.lost = []

    def buildProtocol(self, addr):
        protocol = Site.buildProtocol(self, addr)
        lost = Deferred()
        self.lost.append(lost)
        connection_lost = protocol.connectionLost

        def closed(reason):
            connection_lost(reason)
            lost.callback(None)
        protocol.connectionLost = closed
        return protocol


class TLSTests(TestCase):
    """
    C{Cluster.tls_policy} against a real HTTPS server on 127.0.0.1.
    """

    timeout = 20

    def serve(self, certificate, client_ca=None):
        """
        Serve L{_APIServer} over TLS with C{certificate}, requiring a client
        certificate issued by C{client_ca} if given.

        :return: its URL.
        """
        private = PrivateCertificate.loadPEM(certificate[0] + certificate[1])
        if client_ca is None:
            options = private.options()
        else:
            options = private.options(Certificate.loadPEM(client_ca[0]))
        site = _TrackingSite(_APIServer())
        port = reactor.listenSSL(0, site, options, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: DeferredList(site.lost))
        return "https://127.0.0.1:{}".format(port.getHost().port)

    def get(self, cluster):
        """
        :return: a Deferred firing with the response to a ConfigMap GET.
        """
        pool = HTTPConnectionPool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        http = HTTPClient(agent(reactor, cluster.tls_policy(), pool))
        return http.get(cluster.server + "/api/v1/namespaces/kube-system/configmaps/x",
                        headers=cluster.headers())

    @inlineCallbacks
    def assertOK(self, cluster):
        response = yield self.get(cluster)
        body = yield response.content()
        self.assertEqual((response.code, body), (200, b'{"kind": "ConfigMap"}'))

    @inlineCallbacks
    def assertRefused(self, cluster, reason):
        error = yield self.assertFailure(self.get(cluster), ResponseNeverReceived)
        self.assertTrue(error.reasons[0].check(reason), error.reasons)

    def cluster(self, server, **kwargs):
        return Cluster(server=server, source="test", identity="test",
                       auth=BearerToken(Secret(TOKEN)), **kwargs)

    def test_verified_ip(self):
        """
        A server addressed by IP is accepted when its certificate is issued by
        the cluster's CA and names that IP.
        """
        return self.assertOK(self.cluster(self.serve(SERVER), ca_pem=CA[0]))

    def test_found(self):
        """
        A cluster found from a kubeconfig (CA and token inline) talks to its
        server.
        """
        root = os.path.abspath(self.mktemp())
        path = os.path.join(root, "etc", "kubernetes", "admin.conf")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            f.write(kubeconfig(server=self.serve(SERVER), user={"token": TOKEN},
                               cluster={"certificate-authority-data": b64(CA[0])}))
        cluster, warnings = find_cluster({}, root=root)
        self.assertEqual(warnings, [])
        return self.assertOK(cluster)

    def test_other_ca(self):
        """
        Only the cluster's CA is trusted: a server certificate from another
        CA fails the TLS handshake.
        """
        return self.assertRefused(self.cluster(self.serve(SERVER), ca_pem=make_ca()[0]),
                                  SSL.Error)

    def test_system_store(self):
        """
        Without a CA, the system trust store is used, which does not know
        the test CA.
        """
        return self.assertRefused(self.cluster(self.serve(SERVER)), SSL.Error)

    def test_wrong_ip(self):
        """
        A certificate from the right CA that does not name the IP is refused.
        """
        server = self.serve(make_cert(CA, ["kubernetes.default.svc", "10.96.0.1"]))
        return self.assertRefused(self.cluster(server, ca_pem=CA[0]), VerificationError)

    def test_client_certificate(self):
        """
        The client certificate is presented to a server that requires one.
        """
        client_ca = make_ca("client CA")
        client = make_cert(client_ca, common_name="kubernetes-admin")
        server = self.serve(SERVER, client_ca=client_ca)
        return self.assertOK(self.cluster(server, ca_pem=CA[0], client_cert_pem=client[0],
                                          client_key_pem=client[1]))

    def test_no_client_certificate(self):
        """
        Without a client certificate, a server that requires one refuses.
        """
        server = self.serve(SERVER, client_ca=make_ca("client CA"))
        return self.assertFailure(self.get(self.cluster(server, ca_pem=CA[0])),
                                  ResponseNeverReceived, ResponseFailed)

    def test_insecure(self):
        """
        C{insecure} accepts any certificate, and still presents the client
        certificate.
        """
        client_ca = make_ca("client CA")
        client = make_cert(client_ca, common_name="kubernetes-admin")
        server = self.serve(make_cert(make_ca("unknown")), client_ca=client_ca)
        return self.assertOK(self.cluster(server, insecure=True, client_cert_pem=client[0],
                                          client_key_pem=client[1]))
