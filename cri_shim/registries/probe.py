# -*- test-case-name: tests.registries.test_probe -*-
"""
Ask one registry whether it holds one image: C{HEAD /v2/<repo>/manifests/<ref>}
over treq, with Basic auth or the Bearer token flow its C{WWW-Authenticate}
challenge names.  Reactor thread only.

Credentials go only to the registry they belong to, and to the token realm
that registry names (never over plain HTTP unless the registry itself is
plain HTTP).
"""

import json
import math
import re
from urllib.parse import urlencode, urlsplit

from twisted.internet.defer import inlineCallbacks, returnValue
from twisted.logger import Logger

from cri_shim.registries.httputil import (
    BodyTooLarge,
    basic_auth,
    describe_failure,
    read_capped,
)
from cri_shim.metrics import Metrics

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MAX_TOKEN_BODY = 64 * 1024
#: A token's lifetime when the token service gives none (or a value that is
#: not a finite, non-negative number), as the token spec says.
DEFAULT_TOKEN_SECONDS = 60.0
_CHALLENGE = re.compile(r'([a-zA-Z_]+)="([^"]*)"')


class ProbeError(Exception):
    """
    The registry could not say whether it holds the image (unreachable,
    TLS failure, credentials refused, server error...).

    :ivar reason: a short reason, safe to log (no secrets).
    :ivar unreachable: whether the registry could not be reached at all
        (connection, TLS or timeout), which marks it down at once.
    """

    def __init__(self, reason, unreachable=False):
        Exception.__init__(self, reason)
        self.reason = reason
        self.unreachable = unreachable


class Prober:
    """
    Manifest probes with token caching.

    :param http: a treq-shaped HTTP client (C{treq.client.HTTPClient} or
        C{treq.testing.StubTreq}).
    :param clock: an L{IReactorTime}, for token expiry.
    """

    log = Logger()

    def __init__(self, http, clock, metrics=None):
        self._http = http
        self._clock = clock
        self._metrics = metrics or Metrics()
        self._tokens = {}
        self._basic = set()

    def forget_tokens(self):
        """
        Drop cached tokens and what registries asked for (credentials or
        registries changed).
        """
        self._tokens.clear()
        self._basic.clear()

    def has_manifest(self, registry, target, timeout):
        """
        :param registry: the L{cri_shim.model.config.Registry} to ask.
        :param target: the L{cri_shim.model.reference.Reference} on that registry.
        :param timeout: seconds before the probe is abandoned.
        :return: a Deferred firing C{True} (present) or C{False} (absent), or
            failing with L{ProbeError}.
        """
        started = self._clock.seconds()
        d = self._has_manifest(registry, target)
        d.addTimeout(timeout, self._clock, onTimeoutCancel=_timed_out)
        d.addBoth(self._observe, registry, started)
        return d

    def _observe(self, result, registry, started):
        self._metrics.probe_seconds.observe(self._clock.seconds() - started, registry.name,
                                            "manifest")
        return result

    @inlineCallbacks
    def _has_manifest(self, registry, target):
        url = "{}/v2/{}/manifests/{}".format(
            registry.address.url, target.path, target.manifest_reference)
        response, _ = yield self._logged_in(
            registry, "HEAD", url, {"Accept": [", ".join(MANIFEST_TYPES)]},
            "repository:{}:pull".format(target.path))
        returnValue(_verdict(response, target))

    @inlineCallbacks
    def check_login(self, registry, timeout):
        """
        Ask the registry's API root with its login, for C{--dry-run}.

        :return: a Deferred firing with what was found (reachable, and
            whether the credentials were accepted), or failing with
            L{ProbeError}.
        """
        d = self._logged_in(registry, "GET", registry.address.url + "/v2/", {}, None)
        d.addTimeout(timeout, self._clock, onTimeoutCancel=_timed_out)
        response, challenged = yield d
        if response.code != 200:
            raise ProbeError("the API root answered {}".format(response.code))
        if challenged:
            returnValue("reachable, credentials accepted")
        returnValue("reachable, open (no login needed)")

    @inlineCallbacks
    def _logged_in(self, registry, method, url, headers, scope):
        """
        Send a request, answering the registry's C{WWW-Authenticate}
        challenge with its login.  What worked before goes first: a cached
        Bearer token, or the Basic login of a registry that asked for Basic
        (saving the 401 round trip, as containerd does).

        :return: a Deferred firing with the final response and whether the
            registry asked for the login.
        """
        token_key = (registry.name, scope)
        token = self._cached_token(token_key)
        known = None
        if token is not None:
            known = "Bearer " + token
        elif registry.name in self._basic and registry.credentials is not None:
            known = _basic(registry.credentials)
        challenged = known is not None
        if known is not None:
            headers["Authorization"] = [known]
        response = yield self._request(method, url, headers)
        if response.code == 401 and known is not None:
            self._tokens.pop(token_key, None)
            self._basic.discard(registry.name)
            del headers["Authorization"]
            response = yield self._request(method, url, headers)
        if response.code == 401:
            challenged = True
            authorization = yield self._answer_challenge(registry, response, scope, token_key)
            headers["Authorization"] = [authorization]
            response = yield self._request(method, url, headers)
            if response.code == 401:
                raise ProbeError("credentials rejected (401)" if registry.credentials
                                 else "authentication required (401)")
        returnValue((response, challenged))

    def _cached_token(self, key):
        entry = self._tokens.get(key)
        if entry is None:
            return None
        token, expires = entry
        if self._clock.seconds() >= expires:
            del self._tokens[key]
            return None
        return token

    @inlineCallbacks
    def _request(self, method, url, headers):
        try:
            response = yield self._http.request(method, url, headers=headers,
                                                allow_redirects=False)
        except ProbeError:
            raise
        except Exception as e:
            raise ProbeError(describe_failure(e, 0), unreachable=True)
        # Read (and drop) any body so the connection can be reused.
        yield _read(response, MAX_TOKEN_BODY, keep=False)
        returnValue(response)

    @inlineCallbacks
    def _answer_challenge(self, registry, response, scope, token_key):
        """
        :return: the C{Authorization} header value answering a 401.
        """
        challenge = (response.headers.getRawHeaders(b"www-authenticate") or [b""])[0]
        challenge = challenge.decode("latin-1")
        scheme, _, params = challenge.partition(" ")
        scheme = scheme.lower()
        credentials = registry.credentials
        if scheme == "basic":
            if credentials is None:
                raise ProbeError("authentication required (401) and no credentials configured")
            self._basic.add(registry.name)
            returnValue(_basic(credentials))
        if scheme != "bearer":
            raise ProbeError("unsupported authentication challenge {!r}".format(
                scheme or "(none)"))
        fields = dict(_CHALLENGE.findall(params))
        realm = fields.get("realm", "")
        realm_url = urlsplit(realm)
        if realm_url.scheme not in ("https", registry.address.scheme) or not realm_url.netloc:
            raise ProbeError("token realm {!r} is not usable".format(realm))
        query = {"service": fields.get("service", ""), "scope": scope or ""}
        url = realm + ("&" if "?" in realm else "?") + urlencode(
            {k: v for k, v in query.items() if v})
        headers = {"Accept": ["application/json"]}
        if credentials is not None:
            headers["Authorization"] = [_basic(credentials)]
        try:
            token_response = yield self._http.request("GET", url, headers=headers,
                                                      allow_redirects=False)
        except Exception as e:
            raise ProbeError("token service: " + describe_failure(e, 0))
        body = yield _read(token_response, MAX_TOKEN_BODY)
        if token_response.code in (401, 403):
            raise ProbeError("token service refused the credentials ({})".format(
                token_response.code))
        if token_response.code != 200:
            raise ProbeError("token service answered {}".format(token_response.code))
        try:
            document = json.loads(body.decode("utf-8"))
            token = document.get("token") or document.get("access_token")
            expires_in = float(document.get("expires_in", DEFAULT_TOKEN_SECONDS))
        except (ValueError, AttributeError, TypeError):
            raise ProbeError("token service sent an unreadable answer")
        if not isinstance(token, str) or not token:
            raise ProbeError("token service sent no token")
        if not math.isfinite(expires_in) or expires_in < 0:
            expires_in = DEFAULT_TOKEN_SECONDS
        # Keep it a little shorter than the registry says, at most 5 minutes.
        lifetime = max(min(expires_in, 300.0) - 10.0, 0.0)
        if lifetime:
            self._tokens[token_key] = (token, self._clock.seconds() + lifetime)
        returnValue("Bearer " + token)


def _verdict(response, target):
    code = response.code
    if code == 200:
        if target.digest:
            sent = (response.headers.getRawHeaders(b"docker-content-digest") or [b""])[0]
            if sent and sent.decode("latin-1") != target.digest:
                raise ProbeError("registry answered with digest {} for {}".format(
                    sent.decode("latin-1"), target.digest))
        return True
    if code == 404:
        return False
    if code == 403:
        raise ProbeError("access denied (403)")
    if code == 429:
        raise ProbeError("rate limited (429)")
    raise ProbeError("unexpected HTTP status {}".format(code))


def _basic(credentials):
    return basic_auth(credentials.username, credentials.password.reveal())


def _timed_out(result, timeout):
    raise ProbeError("no answer within {:g}s".format(timeout), unreachable=True)


def _read(response, limit, keep=True):
    """
    L{read_capped}, failing with L{ProbeError} when the body is too large.
    """
    return read_capped(response, limit, keep).addErrback(_too_large)


def _too_large(failure):
    failure.trap(BodyTooLarge)
    raise ProbeError(str(failure.value))
