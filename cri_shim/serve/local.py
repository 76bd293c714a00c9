# -*- test-case-name: tests.serve.test_image_service,tests.serve.test_views,tests.security.test_tenants -*-
"""
[worker threads] Which image the runtime already holds for a requested
name: asked of the runtime under each of the image's local names in turn
(L{cri_shim.model.rewrite.local_names}), for the pod the call is for or for
any pod.

ImageStatus and RemoveImage carry no pod: for a name that registries
restricted to some workloads may serve, the image depends on the pod, so
they find nothing (kubelet then pulls, with the pod's C{sandbox_config}).
CreateContainer names its sandbox: it finds what was resolved for that
pod's scope.
"""

from cri_shim.model import rewrite
from cri_shim.serve.upstream import thd_call


class LocalImages:
    """
    :param api: the CRI version's message module (L{cri_shim.serve.methods.API}).
    :param status: the runtime's ImageStatus call (an C{Upstream.unary}).
    :param holder: the L{cri_shim.snapshot.SnapshotHolder}.
    :param store: the L{cri_shim.serve.name_store.NameStore}, or C{None}.
    """

    def __init__(self, api, status, holder, store):
        self._api = api
        self._status = status
        self._holder = holder
        self._store = store

    def thd_find(self, context, snapshot, ref, pod=None, request=None, raw=None):
        """
        Ask the runtime for C{ref} under each of its local names for C{pod}.

        :param request: an C{ImageStatusRequest} to ask with (its image name
            is set for each name), or C{None} for a new one.
        :param raw: C{request}'s bytes, sent as they are when the first name
            asked is the requested one.
        :return: C{(found name or None, raw ImageStatusResponse or None when
            no name was asked, cache_hit)}.
        """
        scope = rewrite.scope(snapshot.config, ref, pod)
        cached = snapshot.cache.get(rewrite.cache_key(ref, scope))
        stored = self._store.view.target(str(ref), scope) if self._store is not None else None
        if request is None:
            request = self._api.ImageStatusRequest()
        original = str(ref)
        response = None
        for name in rewrite.local_names(snapshot.config, ref, cached, stored, pod):
            if name == original and raw is not None:
                body = raw
            else:
                request.image.image = name
                body = request.SerializeToString()
            response = thd_call(self._status, body, context, self._holder.current.config.timeout)
            if self._api.ImageStatusResponse.FromString(response).HasField("image"):
                return name, response, cached is not None
        return None, response, cached is not None

    def thd_name(self, context, snapshot, ref, pod=None):
        """
        :return: the name the runtime holds C{ref} under for C{pod}, or
            C{None}.
        """
        return self.thd_find(context, snapshot, ref, pod)[0]
