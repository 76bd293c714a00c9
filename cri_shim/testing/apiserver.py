# -*- test-case-name: tests.sync.test_configmap -*-
"""
The part of the Kubernetes API the ConfigMap sync uses, as a C{twisted.web}
resource following the real API's contract.
"""

import json

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

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

    Events (C{POST /api/v1/namespaces/{ns}/events}, C{PATCH .../events/{name}}
    with a merge patch) are kept in C{events}, keyed by C{(namespace,
    name)}: 201 with the object made, 409 on a name clash, 404 for a patch
    of none, 403 with C{events_forbidden}; with C{stall_events}, event
    requests are never answered (kept in C{stalled}).
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
        self.events = {}
        self.events_forbidden = False
        self.stall_events = False
        self.stalled = []

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

    def render_POST(self, request):
        return self._event_request(request, self._create_event)

    def render_PATCH(self, request):
        return self._event_request(request, self._patch_event)

    def _event_request(self, request, answer):
        self.requests += 1
        request.setHeader("content-type", "application/json")
        if request.getHeader("authorization") != "Bearer " + self.token:
            return self._status(request, 401, "Unauthorized", "Unauthorized")
        parts = request.path.decode("ascii").strip("/").split("/")
        if (len(parts) not in (5, 6) or parts[:3] != ["api", "v1", "namespaces"]
                or parts[4] != "events"):
            return self._status(request, 404, "NotFound", "the server could not find the "
                                "requested resource")
        if self.stall_events:
            self.stalled.append(request)
            return NOT_DONE_YET
        if self.events_forbidden:
            return self._status(request, 403, "Forbidden", (
                'events is forbidden: User "system:node:worker-1" cannot create resource '
                '"events" in API group "" in the namespace "{}"').format(parts[3]))
        try:
            body = json.loads(request.content.read().decode("utf-8"))
        except ValueError:
            return self._status(request, 400, "BadRequest", "not JSON")
        return answer(request, parts[3], parts[5] if len(parts) == 6 else None, body)

    def _create_event(self, request, namespace, name, event):
        name = (event.get("metadata") or {}).get("name")
        if not name or event.get("metadata", {}).get("namespace", namespace) != namespace:
            return self._status(request, 422, "Invalid", "metadata.name and namespace")
        if (namespace, name) in self.events:
            return self._status(request, 409, "AlreadyExists",
                                'events "{}" already exists'.format(name), name=name)
        self._version += 1
        event["metadata"].update(resourceVersion=str(self._version), uid="event-{}".format(
            self._version))
        self.events[(namespace, name)] = event
        request.setResponseCode(201)
        return json.dumps(event).encode("utf-8")

    def _patch_event(self, request, namespace, name, patch):
        event = self.events.get((namespace, name))
        if name is None or event is None:
            return self._status(request, 404, "NotFound",
                                'events "{}" not found'.format(name), name=name)
        event.update(patch)
        self._version += 1
        event["metadata"]["resourceVersion"] = str(self._version)
        return json.dumps(event).encode("utf-8")

    def _status(self, request, code, reason, message, name=None):
        request.setResponseCode(code)
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "code": code}
        if name is not None:
            status["details"] = {"name": name, "kind": "configmaps"}
        return json.dumps(status).encode("utf-8")
