# -*- test-case-name: tests.sync.test_apiclient -*-
"""
The HTTP client of an API server found by L{cri_shim.sync.kube}, for the
ConfigMap sync and the pod events alike: TLS by the cluster's policy, its
own connection pool, and a client certificate that follows kubelet's
rotation.

Kubelet renews its client certificate before it expires and points
C{kubelet-client-current.pem} at the new one.  Before each request the
certificate files are checked (in a thread, see
L{cri_shim.sync.cluster.ClientFiles}); when they changed, the pool's idle
connections (made with the old certificate) are closed, so the request
connects anew and presents the new one.  A 401 makes the files be read
again at once, and if they changed the request is sent once more.
"""

from functools import partial

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, inlineCallbacks, returnValue
from twisted.internet.threads import deferToThreadPool

from cri_shim.registries import httputil
from cri_shim.registries.tls import agent

#: The most of a 401's body read before the request is sent again.
MAX_REFUSAL = 64 * 1024


def http_for(reactor, cluster, threadpool=None):
    """
    :param cluster: a L{cri_shim.sync.cluster.Cluster}.
    :param threadpool: where the certificate files are read (the
        reactor's by default).
    :return: a treq-shaped client for C{cluster}'s API server, verifying it
        as C{cluster} says.
    """
    pool = httputil.pool(reactor)
    http = HTTPClient(agent(reactor, cluster.tls_policy(), pool))
    if cluster.client_files is None:
        return http
    run = partial(deferToThreadPool, reactor, threadpool or reactor.getThreadPool())
    return RotatingClient(http, pool, cluster.client_files, run)


class RotatingClient:
    """
    A treq-shaped client (C{get}, C{request}) whose requests present the
    client certificate its files hold now.

    :param http: the treq client, connecting through C{pool} by a policy
        that presents C{files}' current pair.
    :param pool: its C{HTTPConnectionPool} (C{pool}).
    :param files: the L{cri_shim.sync.cluster.ClientFiles}.
    :param run: runs a blocking callable in a thread (see
        L{cri_shim.sync.cluster.ClientFiles.refresh}).
    """

    def __init__(self, http, pool, files, run):
        self._http = http
        self.pool = pool
        self._files = files
        self._run = run

    def get(self, url, **kwargs):
        """
        A C{GET}; see L{request}.
        """
        return self.request("GET", url, **kwargs)

    @inlineCallbacks
    def request(self, method, url, **kwargs):
        """
        As treq's C{request}; the body, if any, must be bytes (it may be
        sent twice).
        """
        if (yield self._files.refresh(self._run)):
            self.pool.closeCachedConnections()
        response = yield self._http.request(method, url, **kwargs)
        if response.code != 401 or not (yield self._files.refresh(self._run, force=True)):
            returnValue(response)
        # Read the refusal (small) so that its connection is let go, then
        # connect anew with the new certificate.
        try:
            yield httputil.read_capped(response, MAX_REFUSAL, keep=False)
        except CancelledError:
            raise
        except Exception:
            # Too large, or cut off: the connection is gone either way.
            pass
        self.pool.closeCachedConnections()
        response = yield self._http.request(method, url, **kwargs)
        returnValue(response)
