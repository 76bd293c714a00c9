# -*- test-case-name: tests.registries.test_probe -*-
"""
Registries as a C{twisted.web} resource for C{treq.testing.StubTreq} (or a
real port), following the registry API's contract (manifest HEAD, Basic
auth, the Bearer token flow) and recording what each registry was sent; and
the registry settings tests build.
"""

import base64
import json

from twisted.web.resource import Resource

from cri_shim.model import config, reference
from cri_shim.testing import hooks


class FakeRegistry:
    """
    One registry's manifests and login.

    :param username: the account, or C{None} for an open registry.
    :param scheme: C{"basic"} or C{"bearer"} (token from C{realm}).
    :param realm: the token service URL for C{"bearer"}.
    :ivar seen: C{(method, path, authorization header)} of every request.
    :ivar status: a status code to answer everything with (with
        C{status_headers}), for failure tests.
    :ivar expires_in: the token lifetime the token service sends (any JSON
        value, C{NaN} included).
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
        self.expires_in = 300
        if password is not None:
            hooks.register_secret(password)
            hooks.register_secret(self.basic()[len("Basic "):])
            hooks.register_secret(self.token)

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
        return json.dumps({"token": self.token, "expires_in": self.expires_in}).encode("ascii")


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
