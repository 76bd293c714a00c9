# -*- test-case-name: tests.sync.test_configmap -*-
"""
The part of the Kubernetes API the ConfigMap sync uses, as a C{twisted.web}
resource following the real API's contract.
"""

import json

from twisted.web.resource import Resource

from cri_shim.testing import hooks


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
        hooks.register_secret(token)
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
            hooks.register_config_text(text)
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
