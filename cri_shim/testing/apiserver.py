# -*- test-case-name: tests.sync.test_watch,tests.sync.test_events -*-
"""
The part of the Kubernetes API the shim uses (ConfigMaps, events), as a
C{twisted.web} resource following the real API's contract, watches included.
"""

import json

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from cri_shim.testing import hooks
from cri_shim.testing.apistatus import forbidden, refused_in, status, status_body, too_large


class FakeAPIServer(Resource):
    """
    The part of the Kubernetes API the ConfigMap sync uses, following its
    contract, with a bearer token and C{Status} bodies for 401/403/404/5xx:

      - C{GET /api/v1/namespaces/{ns}/configmaps/{name}}: one ConfigMap;
      - C{GET /api/v1/namespaces/{ns}/configmaps?fieldSelector=metadata.name=N}:
        a C{ConfigMapList} whose C{resourceVersion} is the store's;
      - the same with C{watch=1}: a stream of JSON events, one a line, from
        C{resourceVersion} on (410 when that is older than the history kept:
        an C{ERROR} event, or with C{gone_as_status} an HTTP 410; 504 "Too
        large resource version" when it is newer than the store, as after
        L{restore}, or with C{too_large_as_event} an C{ERROR} event), a
        C{BOOKMARK} every L{bookmark_interval} when asked for, ended by the
        server after C{timeoutSeconds}.

    Every change bumps the one C{resourceVersion} counter, as etcd does.

    Events (C{POST /api/v1/namespaces/{ns}/events}, C{PATCH .../events/{name}}
    with a merge patch) are kept in C{events}, keyed by C{(namespace,
    name)}: 201 with the object made, 409 on a name clash, 404 for a patch
    of none, 403 with C{events_forbidden} (as RBAC words it), 403 for a
    namespace of C{refused_namespaces} (C{"terminating"} or C{"quota"}, as
    the admission plugins word them); with C{stall_events}, event requests
    are never answered (kept in C{stalled}).

    :param clock: an C{IReactorTime} for watch timeouts and bookmarks.
    :ivar token: the bearer token required.
    :ivar forbidden: answer 403 to everything, as the node authorizer would.
    :ivar watch_forbidden: answer 403 to watches only (get and list allowed).
    :ivar status: a status code to answer every request with (5xx tests).
    :ivar body: raw bytes to answer with instead (garbage tests).
    :ivar bookmarks: the bookmarks sent.
    :ivar requests: the requests answered (events too); C{counts} by kind (C{get},
        C{list}, C{watch}); C{log} their C{(clock time, kind, query)}
        (C{query} a dict) when C{record} is set.
    """

    isLeaf = True
    bookmark_interval = 60.0

    def __init__(self, token="apiserver-token", clock=None):
        Resource.__init__(self)
        self.token = token
        hooks.register_secret(token)
        self.clock = clock
        self.forbidden = False
        self.watch_forbidden = False
        self.gone_as_status = False
        self.too_large_as_event = False
        self.status = None
        self.body = None
        self.requests = 0
        self.bookmarks = 0
        self.counts = {"get": 0, "list": 0, "watch": 0}
        self.record = False
        self.log = []
        self._configmaps = {}
        self._version = 100
        self._history = []
        self._oldest = 0
        self.watches = []
        self.events = {}
        self.events_forbidden = False
        self.refused_namespaces = {}
        self.stall_events = False
        self.stalled = []

    @property
    def version(self):
        """
        The store's C{resourceVersion}.
        """
        return str(self._version)

    def set_configmap(self, namespace, name, data):
        """
        Create or replace a ConfigMap's C{data}.
        """
        for text in data.values():
            hooks.register_config_text(text)
        kind = "MODIFIED" if (namespace, name) in self._configmaps else "ADDED"
        self._version += 1
        self._configmaps[(namespace, name)] = (data, str(self._version))
        self._changed(kind, namespace, name, self._object(namespace, name))

    def delete_configmap(self, namespace, name):
        """
        Remove a ConfigMap.
        """
        if (namespace, name) not in self._configmaps:
            return
        thing = self._object(namespace, name)
        del self._configmaps[(namespace, name)]
        self._version += 1
        thing["metadata"]["resourceVersion"] = str(self._version)
        self._changed("DELETED", namespace, name, thing)

    def compact(self):
        """
        Forget the history: a watch from an older C{resourceVersion} than
        now is answered 410, as after an etcd compaction or a restart.
        """
        self._history = []
        self._oldest = self._version

    def expire(self):
        """
        Answer 410 to a watch from any C{resourceVersion} handed out so far,
        as an API server whose watch cache starts past them all: its
        clients must list again.
        """
        self.compact()
        self._oldest = self._version + 1

    def restore(self, version):
        """
        Roll the store back to C{version}, as an etcd restore from a backup
        does: the history is gone, and the versions handed out since are
        newer than the store (a watch from one is refused until the store
        passes it).
        """
        self._version = version
        self._history = []
        self._oldest = version
        for key, (data, changed) in self._configmaps.items():
            self._configmaps[key] = (data, str(min(int(changed), version)))

    def drop_watches(self):
        """
        Break every watch stream (no clean end), as a crash would.
        """
        for watch in list(self.watches):
            watch.drop()

    def end_watches(self):
        """
        End every watch stream cleanly, as its timeout would.
        """
        for watch in list(self.watches):
            watch.end()

    def _changed(self, kind, namespace, name, thing):
        event = (self._version, namespace, name, {"type": kind, "object": thing})
        self._history.append(event)
        for watch in list(self.watches):
            watch.offer(event)

    def _object(self, namespace, name):
        data, version = self._configmaps[(namespace, name)]
        return {
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": version,
                         "uid": "0b7c2a9e-0000-4000-8000-000000000000"},
            "data": dict(data),
        }

    def render_GET(self, request):
        self.requests += 1
        request.setHeader("content-type", "application/json")
        parts = request.path.decode("ascii").strip("/").split("/")
        query = {key.decode("ascii"): values[-1].decode("utf-8")
                 for key, values in request.args.items()}
        found = len(parts) in (5, 6) and parts[:3] == ["api", "v1", "namespaces"] and \
            parts[4] == "configmaps"
        kind = "get" if len(parts) == 6 else (
            "watch" if query.get("watch") in ("1", "true") else "list")
        if found:
            self._count(kind, query)
        if self.body is not None:
            return self.body
        if self.status is not None:
            return status(request, self.status, "InternalError", "etcdserver: leader changed")
        if request.getHeader("authorization") != "Bearer " + self.token:
            return status(request, 401, "Unauthorized", "Unauthorized")
        if not found:
            return status(request, 404, "NotFound", "the server could not find the "
                           "requested resource")
        namespace = parts[3]
        name = parts[5] if kind == "get" else (
            query.get("fieldSelector", "").partition("metadata.name=")[2] or None)
        if self.forbidden or (kind == "watch" and self.watch_forbidden):
            return forbidden(request, kind, namespace, name)
        if kind == "get":
            if (namespace, name) not in self._configmaps:
                return status(request, 404, "NotFound",
                               'configmaps "{}" not found'.format(name), name=name)
            return json.dumps(self._object(namespace, name)).encode("utf-8")
        if kind == "list":
            items = [self._object(ns, n) for (ns, n) in sorted(self._configmaps)
                     if ns == namespace and name in (None, n)]
            return json.dumps({"kind": "ConfigMapList", "apiVersion": "v1",
                               "metadata": {"resourceVersion": self.version},
                               "items": items}).encode("utf-8")
        return self._watch(request, namespace, name, query)

    def render_POST(self, request):
        return self._event_request(request, self._create_event)

    def render_PATCH(self, request):
        return self._event_request(request, self._patch_event)

    def _event_request(self, request, answer):
        self.requests += 1
        request.setHeader("content-type", "application/json")
        if request.getHeader("authorization") != "Bearer " + self.token:
            return status(request, 401, "Unauthorized", "Unauthorized")
        parts = request.path.decode("ascii").strip("/").split("/")
        if (len(parts) not in (5, 6) or parts[:3] != ["api", "v1", "namespaces"]
                or parts[4] != "events"):
            return status(request, 404, "NotFound", "the server could not find the "
                           "requested resource")
        if self.stall_events:
            self.stalled.append(request)
            return NOT_DONE_YET
        if self.events_forbidden:
            return status(request, 403, "Forbidden", (
                'events is forbidden: User "system:node:worker-1" cannot create resource '
                '"events" in API group "" in the namespace "{}"').format(parts[3]))
        if parts[3] in self.refused_namespaces:
            return refused_in(request, parts[3], self.refused_namespaces[parts[3]])
        try:
            body = json.loads(request.content.read().decode("utf-8"))
        except ValueError:
            return status(request, 400, "BadRequest", "not JSON")
        return answer(request, parts[3], parts[5] if len(parts) == 6 else None, body)

    def _create_event(self, request, namespace, name, event):
        name = (event.get("metadata") or {}).get("name")
        if not name or event.get("metadata", {}).get("namespace", namespace) != namespace:
            return status(request, 422, "Invalid", "metadata.name and namespace")
        if (namespace, name) in self.events:
            return status(request, 409, "AlreadyExists",
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
            return status(request, 404, "NotFound",
                           'events "{}" not found'.format(name), name=name)
        event.update(patch)
        self._version += 1
        event["metadata"]["resourceVersion"] = str(self._version)
        return json.dumps(event).encode("utf-8")

    def _count(self, kind, query=None):
        self.counts[kind] += 1
        if self.record:
            self.log.append((self.clock.seconds(), kind, query or {}))

    def _watch(self, request, namespace, name, query):
        try:
            since = int(query.get("resourceVersion") or self._version)
        except ValueError:
            return status(request, 400, "BadRequest", "invalid resourceVersion")
        if since < self._oldest:
            message = "too old resource version: {} ({})".format(since, self._oldest)
            if self.gone_as_status:
                return status(request, 410, "Expired", message)
            request.write(_line({"type": "ERROR",
                                 "object": status_body(410, "Expired", message)}))
            request.finish()
            return NOT_DONE_YET
        if since > self._version:
            refusal = too_large(since, self._version)
            if not self.too_large_as_event:
                request.setResponseCode(504)
                return json.dumps(refusal).encode("utf-8")
            request.write(_line({"type": "ERROR", "object": refusal}))
            request.finish()
            return NOT_DONE_YET
        watch = _Watch(self, request, namespace, name,
                       query.get("allowWatchBookmarks") == "true")
        self.watches.append(watch)
        request.notifyFinish().addBoth(lambda _: watch.close())
        request.write(b"")
        for event in self._history:
            if event[0] > since:
                watch.offer(event)
        timeout = float(query.get("timeoutSeconds") or 1800)
        watch.calls.append(self.clock.callLater(timeout, watch.end))
        return NOT_DONE_YET


class _Watch:
    """
    One watch stream.
    """

    def __init__(self, server, request, namespace, name, bookmarks):
        self.server = server
        self.request = request
        self.namespace = namespace
        self.name = name
        self.calls = []
        if bookmarks:
            self.calls.append(server.clock.callLater(server.bookmark_interval, self.bookmark))

    def offer(self, event):
        _, namespace, name, body = event
        if namespace == self.namespace and self.name in (None, name):
            self.request.write(_line(body))

    def bookmark(self):
        self.server.bookmarks += 1
        self.request.write(_line({"type": "BOOKMARK", "object": {
            "kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"resourceVersion": self.server.version}}}))
        self.calls.append(self.server.clock.callLater(self.server.bookmark_interval,
                                                      self.bookmark))

    def end(self):
        if self.close():
            self.request.finish()

    def drop(self):
        if self.close():
            self.request.channel.transport.abortConnection()

    def close(self):
        """
        :return: whether it was open.
        """
        for call in self.calls:
            if call.active():
                call.cancel()
        if self not in self.server.watches:
            return False
        self.server.watches.remove(self)
        return True


def _line(body):
    return json.dumps(body).encode("utf-8") + b"\n"
