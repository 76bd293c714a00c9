# -*- test-case-name: tests.registries.test_probe -*-
"""
Test doubles that run the real request code: a CRI runtime on a real gRPC
server that records what it is sent, and registries as a C{twisted.web}
resource for C{treq.testing.StubTreq}, following the registry API's contract
(manifest HEAD, Basic auth, the Bearer token flow), and recording what each
registry was sent.
"""

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from twisted.web.resource import Resource

from cri_shim.model import config, reference
from cri_shim.serve import methods


def register_secret(value):
    """
    Called with every password, token and base64 login the doubles here are
    given.  Does nothing; C{tests.secrets_guard} replaces it during a test
    run, to check that none of them ever shows in a log.
    """


def register_config_text(text):
    """
    Called with every document a L{FakeAPIServer} ConfigMap holds (they
    carry registry logins).  Does nothing; see L{register_secret}.
    """


class FakeRegistry:
    """
    One registry's manifests and login.

    :param username: the account, or C{None} for an open registry.
    :param scheme: C{"basic"} or C{"bearer"} (token from C{realm}).
    :param realm: the token service URL for C{"bearer"}.
    :ivar seen: C{(method, path, authorization header)} of every request.
    :ivar status: a status code to answer everything with (with
        C{status_headers}), for failure tests.
    """

    def __init__(self, username=None, password=None, scheme="basic", realm=None):
        self.username = username
        self.password = password
        self.scheme = scheme
        self.realm = realm
        self.manifests = {}
        self.seen = []
        self.status = None
        self.status_headers = {}
        self.token = "token-for-{}".format(username)
        if password is not None:
            register_secret(password)
            register_secret(self.basic()[len("Basic "):])
            register_secret(self.token)

    def add(self, ref):
        """
        Hold the image C{ref} (a L{reference.Reference} naming this registry
        or just its path): by its tag and by its digest.
        """
        digest = ref.digest or "sha256:" + "%064x" % (len(self.manifests) + 1)
        if ref.tag:
            self.manifests[(ref.path, ref.tag)] = digest
        self.manifests[(ref.path, digest)] = digest
        return digest

    def basic(self):
        """
        :return: the C{Authorization} value this registry's login sends.
        """
        raw = "{}:{}".format(self.username, self.password).encode("utf-8")
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def answer(self, request, path):
        authorization = (request.getHeader("authorization") or "")
        self.seen.append((request.method.decode("ascii"), path, authorization))
        if self.status is not None:
            request.setResponseCode(self.status)
            for name, value in self.status_headers.items():
                request.setHeader(name, value)
            return b""
        if not path.startswith("/v2/"):
            request.setResponseCode(404)
            return b""
        if not self._authorized(authorization):
            request.setResponseCode(401)
            if self.scheme == "basic":
                request.setHeader("www-authenticate", 'Basic realm="fake"')
            else:
                request.setHeader("www-authenticate", 'Bearer realm="{}",service="fake"'.format(
                    self.realm))
            return b""
        if path == "/v2/":
            return b"{}"
        repo, _, tail = path[len("/v2/"):].partition("/manifests/")
        digest = self.manifests.get((repo, tail))
        if digest is None:
            request.setResponseCode(404)
            return b""
        request.setHeader("docker-content-digest", digest)
        return b""

    def _authorized(self, authorization):
        if self.username is None:
            return True
        if self.scheme == "basic":
            return authorization == self.basic()
        return authorization == "Bearer " + self.token

    def issue_token(self, request):
        """
        Answer the token service: a token for a valid Basic login.
        """
        authorization = request.getHeader("authorization") or ""
        self.seen.append(("GET", "token", authorization))
        if authorization != self.basic():
            request.setResponseCode(401)
            return b"{}"
        request.setHeader("content-type", "application/json")
        return json.dumps({"token": self.token, "expires_in": 300}).encode("ascii")


class FakeRegistries(Resource):
    """
    Routes requests by C{Host} to L{FakeRegistry}s; a token service is any
    host registered with L{add_token_service}.
    """

    isLeaf = True

    def __init__(self):
        Resource.__init__(self)
        self.registries = {}
        self.token_services = {}

    def add(self, host, registry):
        """
        Serve C{registry} at C{host} (C{"name[:port]"}).

        :return: C{registry}.
        """
        self.registries[host] = registry
        return registry

    def add_token_service(self, host, registry):
        """
        Serve C{registry}'s token service at C{host}.
        """
        self.token_services[host] = registry

    def render(self, request):
        host = request.getHeader("host")
        path = request.path.decode("ascii")
        if host in self.token_services:
            return self.token_services[host].issue_token(request)
        registry = self.registries.get(host)
        if registry is None:
            request.setResponseCode(502)
            return b""
        return registry.answer(request, path)


def registry_config(address, username=None, password=None, priority=500, offline=False,
                    mirror_of=()):
    """
    :return: a L{config.Registry} for tests.
    """
    credentials = None
    if username is not None:
        credentials = config.Credentials(username, config.Secret(password))
    return config.Registry(
        address=reference.parse_registry_address(address), credentials=credentials,
        priority=priority, offline=offline, mirror_of=tuple(mirror_of))


class FakeRuntime:
    """
    A CRI runtime on a real gRPC server, for tests of the relay: it records
    the raw bytes, deadline and metadata of every call and answers
    ImageStatus, PullImage and RemoveImage from C{images}; any other method
    echoes its request bytes back, except those in C{failures}.

    :ivar images: image name -> image id, as the runtime holds them.
    :ivar failures: method name or image name -> C{(grpc.StatusCode,
        details)} to fail with.
    :ivar calls: C{(path, raw request, time remaining, metadata)} tuples.
    :ivar delays: method name (image name for a pull) -> seconds to answer it.
    :ivar arrived: a C{threading.Event} set when a call arrives.
    """

    def __init__(self, socket_path, package="runtime.v1"):
        self.api = methods.API[package]
        self.images = {}
        self.failures = {}
        self.calls = []
        self.delays = {}
        self.arrived = threading.Event()
        self.stream_items = [b"one", b"two", b"three"]
        self._server = grpc.server(ThreadPoolExecutor(8), handlers=[self._Router(self)],
                                   options=[("grpc.max_receive_message_length", 64 << 20),
                                            ("grpc.max_send_message_length", 64 << 20)])
        self._server.add_insecure_port("unix:" + socket_path)
        self._server.start()

    def stop(self):
        """
        Stop the server at once.
        """
        self._server.stop(None).wait()

    class _Router:
        def __init__(self, runtime):
            self.runtime = runtime

        def service(self, details):
            path = details.method
            if path.endswith("/StreamImages"):
                return grpc.unary_stream_rpc_method_handler(
                    lambda raw, context: self.runtime._stream(path, raw, context))
            return grpc.unary_unary_rpc_method_handler(
                lambda raw, context: self.runtime._unary(path, raw, context))

    def _record(self, path, raw, context):
        self.calls.append((path, raw, context.time_remaining(),
                           dict(context.invocation_metadata())))
        self.arrived.set()

    def _fail_if(self, key, context):
        failure = self.failures.get(key)
        if failure is not None:
            code, details = failure
            context.set_trailing_metadata((("x-runtime", "failed"),))
            context.abort(code, details)

    def _unary(self, path, raw, context):
        self._record(path, raw, context)
        method = path.rsplit("/", 1)[1]
        if method in self.delays:
            time.sleep(self.delays[method])
        self._fail_if(method, context)
        api = self.api
        if method == "ImageStatus":
            name = api.ImageStatusRequest.FromString(raw).image.image
            response = api.ImageStatusResponse()
            if name in self.images:
                response.image.id = self.images[name]
                response.image.repo_tags.append(name)
            return response.SerializeToString()
        if method == "PullImage":
            name = api.PullImageRequest.FromString(raw).image.image
            time.sleep(self.delays.get(name, 0))
            self._fail_if(name, context)
            self.images[name] = "sha256:" + "%064x" % (len(self.images) + 1)
            return api.PullImageResponse(image_ref=self.images[name]).SerializeToString()
        if method == "RemoveImage":
            self.images.pop(api.RemoveImageRequest.FromString(raw).image.image, None)
            return b""
        return raw

    def _stream(self, path, raw, context):
        self._record(path, raw, context)
        self._fail_if(path.rsplit("/", 1)[1], context)
        for item in self.stream_items:
            yield item


class FakeAPIServer(Resource):
    """
    The part of the Kubernetes API the ConfigMap sync uses, following its
    contract: C{GET /api/v1/namespaces/{ns}/configmaps/{name}} with a bearer
    token, C{Status} bodies for 401/403/404/5xx, C{resourceVersion} bumped on
    every change.

    :ivar token: the bearer token required.
    :ivar forbidden: answer 403 as the node authorizer would.
    :ivar status: a status code to answer every request with (5xx tests).
    :ivar body: raw bytes to answer with instead (garbage tests).
    """

    isLeaf = True

    def __init__(self, token="apiserver-token"):
        Resource.__init__(self)
        self.token = token
        register_secret(token)
        self.forbidden = False
        self.status = None
        self.body = None
        self.requests = 0
        self._configmaps = {}
        self._version = 100

    def set_configmap(self, namespace, name, data):
        """
        Create or replace a ConfigMap's C{data}.
        """
        for text in data.values():
            register_config_text(text)
        self._version += 1
        self._configmaps[(namespace, name)] = (data, str(self._version))

    def delete_configmap(self, namespace, name):
        """
        Remove a ConfigMap.
        """
        self._configmaps.pop((namespace, name), None)

    def render_GET(self, request):
        self.requests += 1
        request.setHeader("content-type", "application/json")
        if self.body is not None:
            return self.body
        if self.status is not None:
            return self._status(request, self.status, "InternalError", "etcdserver: leader changed")
        if request.getHeader("authorization") != "Bearer " + self.token:
            return self._status(request, 401, "Unauthorized", "Unauthorized")
        parts = request.path.decode("ascii").strip("/").split("/")
        if len(parts) != 6 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] != "configmaps":
            return self._status(request, 404, "NotFound", "the server could not find the "
                                "requested resource")
        namespace, name = parts[3], parts[5]
        if self.forbidden:
            return self._status(request, 403, "Forbidden", (
                'configmaps "{}" is forbidden: User "system:node:worker-1" cannot get resource '
                '"configmaps" in API group "" in the namespace "{}"').format(name, namespace),
                name=name)
        found = self._configmaps.get((namespace, name))
        if found is None:
            return self._status(request, 404, "NotFound",
                                'configmaps "{}" not found'.format(name), name=name)
        data, version = found
        return json.dumps({
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": version,
                         "uid": "0b7c2a9e-0000-4000-8000-000000000000"},
            "data": data,
        }).encode("utf-8")

    def _status(self, request, code, reason, message, name=None):
        request.setResponseCode(code)
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "code": code}
        if name is not None:
            status["details"] = {"name": name, "kind": "configmaps"}
        return json.dumps(status).encode("utf-8")


# --- TLS certificates (for tests.sync.test_kube) ---------------------------------


def make_ca(common_name="image-cri-shim test CA"):
    """
    A new self-signed certificate authority, valid for a day.

    :return: C{(certificate PEM, private key PEM)} bytes.
    """
    return _issue(None, common_name, None, (), ca=True)


def make_cert(ca, sans=(), common_name=None, organization=None):
    """
    A new certificate signed by C{ca}, for TLS servers and clients, valid for
    a day.

    :param ca: C{(certificate PEM, private key PEM)} from L{make_ca}.
    :param sans: its subject alternative names: IP addresses (C{"127.0.0.1"})
        or DNS names.
    :param common_name: its subject's CN; the first of C{sans} by default.
    :param organization: its subject's O, if any.
    :return: C{(certificate PEM, private key PEM)} bytes; the key is an
        C{EC PRIVATE KEY}.
    """
    return _issue(ca, common_name or (sans[0] if sans else "test"), organization, sans, ca=False)


def _issue(issuer, common_name, organization, sans, ca):
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    subject = x509.Name(attributes)
    if issuer is None:
        issuer_name, issuer_key = subject, key
    else:
        issuer_name = x509.load_pem_x509_certificate(issuer[0]).subject
        issuer_key = serialization.load_pem_private_key(issuer[1], password=None)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    names = []
    for name in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = builder.sign(issuer_key, hashes.SHA256())
    return (certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))
