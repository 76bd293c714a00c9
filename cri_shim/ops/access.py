# -*- test-case-name: tests.ops.test_access -*-
"""
Who may reach the admin endpoint, and how many at once.  Any local user can
connect to a TCP port: there only the read-only pages are served
(C{/metrics}, C{/healthz}, C{/readyz}), unless the request carries the
bearer token of C{adminTokenFile}.  Every listener keeps at most
L{MAX_CONNECTIONS} connections open and closes extra ones at once, so a
flood of idle connections never takes the file descriptors CRI calls need.
Reactor thread only.
"""

import hmac
import os
import stat

from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource

#: The pages served on TCP without a token: they read and change nothing.
PUBLIC = frozenset([b"metrics", b"healthz", b"readyz"])
#: Open connections per admin listener; more are closed as they come.
MAX_CONNECTIONS = 64
#: The largest token file read.
MAX_TOKEN_BYTES = 4096
#: The shortest token accepted.
MIN_TOKEN_LENGTH = 16


class TokenError(ValueError):
    """
    The token file cannot be used; the message says why (never the token).
    """


def read_token(path):
    """
    Read the admin bearer token: a regular file owned by this user, with no
    access for group or others, of at most L{MAX_TOKEN_BYTES}, holding at
    least L{MIN_TOKEN_LENGTH} visible ASCII characters (surrounding
    whitespace ignored).  Opened without blocking, so a FIFO cannot stall
    the caller.

    :return: the token, as bytes.
    :raise TokenError: saying what is wrong with the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise TokenError("cannot open {}: {}".format(path, e.strerror or e))
    try:
        status = os.fstat(fd)
        mode = stat.S_IMODE(status.st_mode)
        if not stat.S_ISREG(status.st_mode):
            raise TokenError("{} is not a regular file".format(path))
        if mode & 0o077:
            raise TokenError("{} is mode {:04o}; it must be 0600 (no access for group or "
                             "others)".format(path, mode))
        if status.st_uid != os.geteuid():
            raise TokenError("{} is owned by uid {}, not by the shim's user".format(
                path, status.st_uid))
        token = os.read(fd, MAX_TOKEN_BYTES + 1)
    finally:
        os.close(fd)
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError("{} holds more than {} bytes".format(path, MAX_TOKEN_BYTES))
    token = token.strip()
    if not all(0x21 <= byte <= 0x7e for byte in token):
        raise TokenError("{}: the token must be one word of visible ASCII characters"
                         .format(path))
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError("{}: the token is shorter than {} characters".format(
            path, MIN_TOKEN_LENGTH))
    return token


class TCPGuard(Resource):
    """
    The admin endpoint's root as a TCP listener serves it: the read-only
    pages of C{root} for anyone, the rest only with C{Authorization: Bearer
    <token>}, and never without a token configured.

    :param root: the admin endpoint's root resource.
    :param token: the bearer token (bytes), or C{None} for none.
    """

    def __init__(self, root, token):
        Resource.__init__(self)
        self._root = root
        self._token = token

    def getChildWithDefault(self, name, request):
        if name in PUBLIC or self._authorized(request):
            return self._root.getChildWithDefault(name, request)
        if self._token is None:
            return _Refused(403, "only /metrics, /healthz and /readyz are served over TCP; "
                            "use the admin UNIX socket (or set adminTokenFile)")
        return _Refused(401, "this needs the admin bearer token")

    def _authorized(self, request):
        if self._token is None:
            return False
        scheme, _, value = (request.getHeader(b"authorization") or b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self._token)


class _Refused(Resource):
    """
    A refusal, whatever the method.
    """

    isLeaf = True

    def __init__(self, code, text):
        Resource.__init__(self)
        self._code = code
        self._text = (text + "\n").encode("utf-8")

    def render(self, request):
        request.setResponseCode(self._code)
        if self._code == 401:
            request.setHeader(b"www-authenticate", b'Bearer realm="image-cri-shim"')
        request.setHeader(b"content-type", b"text/plain")
        return self._text


class ConnectionLimit(WrappingFactory):
    """
    A factory that keeps at most C{limit} connections of C{wrapped} open:
    another is closed as soon as it is accepted (one warning per flood).

    :param address: the listener's address, for the warning.
    """

    log = Logger()

    def __init__(self, wrapped, address, limit=MAX_CONNECTIONS):
        WrappingFactory.__init__(self, wrapped)
        self.noisy = False
        self._address = address
        self._limit = limit
        self._refusing = False

    def buildProtocol(self, addr):
        if len(self.protocols) < self._limit:
            self._refusing = False
            return WrappingFactory.buildProtocol(self, addr)
        if not self._refusing:
            self._refusing = True
            self.log.warn("the admin endpoint on {address} has {limit} connections open; "
                          "closing new ones until some end", address=self._address,
                          limit=self._limit)
        return None
