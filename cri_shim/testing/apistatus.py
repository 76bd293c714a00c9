# -*- test-case-name: tests.sync.test_watch,tests.sync.test_events -*-
"""
The C{Status} bodies L{cri_shim.testing.apiserver.FakeAPIServer} answers
with, worded as the API server words them (RBAC, admission plugins,
storage).
"""

import json


def forbidden(request, verb, namespace, name):
    """
    A 403 from RBAC for the node's identity on a ConfigMap.
    """
    return status(request, 403, "Forbidden", (
        'configmaps "{}" is forbidden: User "system:node:worker-1" cannot {} resource '
        '"configmaps" in API group "" in the namespace "{}"').format(name, verb, namespace),
        name=name)


def refused_in(request, namespace, why):
    """
    A 403 from an admission plugin: the namespace is being terminated
    (with the C{NamespaceTerminating} cause), or its quota is used up.
    """
    request.setResponseCode(403)
    if why == "terminating":
        body = status_body(403, "Forbidden", (
            'events "x" is forbidden: unable to create new content in namespace {} because '
            'it is being terminated').format(namespace))
        body["details"] = {"kind": "events", "causes": [{
            "reason": "NamespaceTerminating", "field": "metadata.namespace",
            "message": "namespace {} is being terminated".format(namespace)}]}
    else:
        body = status_body(403, "Forbidden", (
            'events "x" is forbidden: exceeded quota: events, requested: count/events=1, '
            'used: count/events=100, limited: count/events=100'))
    return json.dumps(body).encode("utf-8")


def status(request, code, reason, message, name=None):
    """
    Set C{code} and return a C{Status} body saying it.
    """
    request.setResponseCode(code)
    return json.dumps(status_body(code, reason, message, name)).encode("utf-8")


def status_body(code, reason, message, name=None):
    """
    :param name: the ConfigMap the Status is about, if any.
    :return: a failure C{Status} object.
    """
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if name is not None:
        body["details"] = {"name": name, "kind": "configmaps"}
    return body


def too_large(since, current):
    """
    :return: the Status of a watch from a version newer than the store, as
        the API server words it (storage.NewTooLargeResourceVersionError).
    """
    body = status_body(504, "Timeout", "Timeout: Too large resource version: {}, "
                       "current: {}".format(since, current))
    body["details"] = {"retryAfterSeconds": 1, "causes": [{
        "reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]}
    return body
