# -*- test-case-name: tests.e2e.test_token_auth -*-
"""
Token authentication for the sandbox, as Docker Hub, Harbor or GitLab run it:
a token issuer, and a C{docker-registry} with C{auth: token} that trusts it.

L{TokenIssuer} is a small HTTP server on 127.0.0.1 (C{http.server} in a
thread).  It takes a login (Basic on C{GET}, the OAuth2 password grant on
C{POST}, as containerd sends first), grants each user the actions it may do
on the repositories the C{scope} asks for, and answers with a JWT signed
(ES256) by a key whose self-signed certificate travels in the token's
C{x5c} header and sits in the registry's C{rootcertbundle}.  It records
every request (user, C{service}, C{scope}, client, answer) for tests to
assert on.

L{TokenRegistry} is a L{sandbox.Registry} that runs its own issuer and
pushes images through the same Bearer flow any client would use.

Blocking code and threads, no reactor, like L{sandbox}; the keys are made
with C{cryptography} (there for C{service-identity} already) through
L{cri_shim.testing.make_ca}.  Dev tooling only, never shipped.
"""

import base64
import dataclasses
import datetime
import fnmatch
import hmac
import http.server
import json
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from cri_shim.testing import make_ca
from dev import sandbox

#: The registry's C{auth.token.service}: what a token's audience must be.
SERVICE = "sandbox-registry"
#: The registry's C{auth.token.issuer}: who a token must come from.
ISSUER = "sandbox-token-issuer"
#: Seconds a token is valid (Docker Hub's is 300).
TOKEN_LIFETIME = 300
#: Where the issuer serves tokens.
TOKEN_PATH = "/token"

_CHALLENGE = re.compile(r'([a-zA-Z_]+)="([^"]*)"')
_ES256_HALF = 32


@dataclasses.dataclass(frozen=True)
class TokenRequest:
    """
    One request the issuer answered.

    :ivar method: C{GET} (Basic login) or C{POST} (OAuth2 password grant).
    :ivar username: the user named by the login, accepted or not; C{None}
        when none was sent.
    :ivar service: the C{service} asked for (the token's audience).
    :ivar scopes: the C{scope}s asked for, e.g.
        C{("repository:library/nginx:pull",)}.
    :ivar agent: the client's C{User-Agent}.
    :ivar status: the HTTP status of the answer (200, or 401 for a login
        refused).
    :ivar granted: the scopes the token allows, in the same form.
    :ivar token: the token issued, or C{None}.
    """

    method: str
    username: "str | None"
    service: str
    scopes: tuple
    agent: str
    status: int
    granted: tuple
    token: "str | None"


@dataclasses.dataclass(frozen=True)
class _User:
    password: str
    repositories: tuple
    actions: frozenset


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_b64url(value):
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def _basic_login(header):
    """
    :return: the C{(user, password)} of a Basic C{Authorization} header, or
        C{None}.
    """
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(value).decode("utf-8").partition(":")
    except ValueError:
        return None
    return (user, password) if colon else None


class TokenIssuer:
    """
    A token server for registries configured with C{auth: token}.

    :ivar certificate_pem: the signing certificate, for the registry's
        C{rootcertbundle}.
    :ivar port: the TCP port while it serves, else C{None}.
    """

    def __init__(self, lifetime=TOKEN_LIFETIME):
        """
        :param lifetime: seconds each token is valid (its C{expires_in}).
        """
        self.lifetime = lifetime
        # An EC P-256 key: the token's algorithm is ES256.
        self.certificate_pem, key_pem = make_ca(ISSUER)
        self._key = serialization.load_pem_private_key(key_pem, password=None)
        certificate = x509.load_pem_x509_certificate(self.certificate_pem)
        self._x5c = [base64.b64encode(
            certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")]
        self._users = {}
        self._requests = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self.port = None

    @property
    def realm(self):
        """
        The URL tokens are asked from: the registry's C{auth.token.realm}.
        """
        if self.port is None:
            raise sandbox.SandboxError("the token issuer has no port until it is started")
        return "http://127.0.0.1:{}{}".format(self.port, TOKEN_PATH)

    def add_user(self, username, password, repositories=("*",), actions=("pull", "push")):
        """
        Let a user in, or change what it may do.

        :param repositories: C{fnmatch} patterns of the repositories it may
            use, e.g. C{("team/*",)}.
        :param actions: what it may do there (C{pull}, C{push}, C{delete}).
        """
        with self._lock:
            self._users[username] = _User(password, tuple(repositories), frozenset(actions))

    def requests(self):
        """
        :return: every L{TokenRequest} answered so far, oldest first.
        """
        with self._lock:
            return list(self._requests)

    def start(self):
        """
        Listen on 127.0.0.1 (a free port) and serve in a daemon thread.  It
        accepts connections when this returns.  Idempotent.
        """
        if self._server is not None:
            return
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.issuer = self
        self._server, self.port = server, server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": sandbox._POLL_INTERVAL},
            name="token-issuer", daemon=True)
        self._thread.start()

    def stop(self):
        """
        Stop serving and close the socket.  Idempotent.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self._thread.join(sandbox.STOP_TIMEOUT)
        self.port = None

    def answer(self, method, login, service, scopes, agent):
        """
        Decide one token request and record it.

        :param login: C{(user, password)}, or C{None}.
        :return: C{(status, JSON document)}.
        """
        with self._lock:
            user = self._users.get(login[0]) if login else None
        if user is None or not hmac.compare_digest(user.password.encode(), login[1].encode()):
            status, granted, token = 401, (), None
            document = {"errors": [{"code": "UNAUTHORIZED", "message": "login refused"}]}
        else:
            access = [entry for entry in (self._grant(user, scope) for scope in scopes)
                      if entry is not None]
            granted = tuple("{type}:{name}:{}".format(",".join(entry["actions"]), **entry)
                            for entry in access)
            token = self._sign(login[0], service, access)
            status = 200
            document = {"token": token, "access_token": token, "expires_in": self.lifetime,
                        "issued_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        record = TokenRequest(method, login[0] if login else None, service, tuple(scopes),
                              agent, status, granted, token)
        with self._lock:
            self._requests.append(record)
        return status, document

    @staticmethod
    def _grant(user, scope):
        """
        :return: the C{access} claim entry for C{scope}: the actions asked
            for that C{user} may do there, or C{None} for none.
        """
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not any(
                fnmatch.fnmatchcase(name, pattern) for pattern in user.repositories):
            return None
        allowed = [action for action in actions.split(",") if action in user.actions]
        return {"type": kind, "name": name, "actions": allowed} if allowed else None

    def _sign(self, subject, service, access):
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": self._x5c}
        claims = {"iss": ISSUER, "sub": subject, "aud": service, "iat": now, "nbf": now,
                  "exp": now + self.lifetime, "jti": os.urandom(16).hex(), "access": access}
        signed = "{}.{}".format(_json_b64url(header), _json_b64url(claims))
        r, s = decode_dss_signature(self._key.sign(signed.encode(), ec.ECDSA(hashes.SHA256())))
        # JWS wants the raw r || s, not the DER sequence.
        raw = r.to_bytes(_ES256_HALF, "big") + s.to_bytes(_ES256_HALF, "big")
        return "{}.{}".format(signed, _b64url(raw))


class _Handler(http.server.BaseHTTPRequestHandler):
    """
    C{GET /token?service=S&scope=A&scope=B} with Basic auth, or C{POST
    /token} with an C{application/x-www-form-urlencoded} password grant.
    """

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        self._reply(url.path, "GET", _basic_login(self.headers.get("Authorization")), query)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8"))
        login = None
        if form.get("grant_type") == ["password"]:
            login = (form.get("username", [""])[0], form.get("password", [""])[0])
        self._reply(url.path, "POST", login, form)

    def _reply(self, path, method, login, fields):
        if path != TOKEN_PATH:
            status, document = 404, {"errors": [{"code": "NOT_FOUND"}]}
        else:
            scopes = [scope for value in fields.get("scope", []) for scope in value.split()]
            status, document = self.server.issuer.answer(
                method, login, fields.get("service", [""])[0], scopes,
                self.headers.get("User-Agent", ""))
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        """
        Quiet: L{TokenIssuer.requests} is the record.
        """


def fetch_token(realm, service, scope, username, password):
    """
    Ask a token server for a token, as a registry client does after a 401.

    :return: the token.
    :raise sandbox.SandboxError: if it is refused or cannot be asked.
    """
    query = urllib.parse.urlencode([("service", service), ("scope", scope)])
    request = urllib.request.Request(realm + ("&" if "?" in realm else "?") + query)
    credentials = base64.b64encode("{}:{}".format(username, password).encode())
    request.add_header("Authorization", "Basic " + credentials.decode())
    try:
        with sandbox._OPENER.open(request, timeout=sandbox.HTTP_TIMEOUT) as response:
            return json.load(response)["token"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        raise sandbox.SandboxError("no token from {}: {}".format(realm, e)) from e


class TokenRegistry(sandbox.Registry):
    """
    A L{sandbox.Registry} with C{auth: token}, trusting its own
    L{TokenIssuer} (started before the registry, stopped after it).  Its
    login may do anything; give other users with C{issuer.add_user}.

    For a sandbox, pass a factory as the registry entry:
    C{functools.partial(TokenRegistry, username="admin", password="...")}.

    :ivar issuer: the L{TokenIssuer}.
    :ivar service: the registry's C{service}.
    """

    def __init__(self, directory, username, password, port=None, service=SERVICE):
        super().__init__(directory, username, password, port)
        self.service = service
        self.issuer = TokenIssuer()
        self.issuer.add_user(username, password)
        self.bundle_path = os.path.join(directory, "token-issuer.pem")
        self._token = None

    def _auth_config(self):
        with open(self.bundle_path, "wb") as f:
            f.write(self.issuer.certificate_pem)
        return {"token": {"realm": self.issuer.realm, "service": self.service,
                          "issuer": ISSUER, "rootcertbundle": self.bundle_path}}

    def start(self, timeout=sandbox.START_TIMEOUT):
        self.issuer.start()
        super().start(timeout)

    def stop(self, timeout=sandbox.STOP_TIMEOUT):
        super().stop(timeout)
        self.issuer.stop()

    def request(self, method, path, body=None, headers=None, auth=True):
        """
        Like L{sandbox.Registry.request}, with the Bearer flow: the last
        token goes first; on a 401, a token for the scope the challenge
        names is fetched with this registry's login, and the request sent
        again.
        """
        headers = dict(headers or {})
        if auth and self._token is not None:
            headers["Authorization"] = "Bearer " + self._token
        answer = super().request(method, path, body, headers, auth=False)
        if not auth or answer[0] != 401:
            return answer
        challenge = dict(_CHALLENGE.findall(answer[1].get("WWW-Authenticate", "")))
        self._token = fetch_token(challenge.get("realm", ""), challenge.get("service", ""),
                                  challenge.get("scope", ""), self.username, self.password)
        headers["Authorization"] = "Bearer " + self._token
        return super().request(method, path, body, headers, auth=False)
