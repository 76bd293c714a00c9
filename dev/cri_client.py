# -*- test-case-name: tests.e2e.test_pulls -*-
"""
A small blocking CRI client built from the method table (no generated
C{_pb2_grpc} code), for the demo, the end-to-end tests and the benchmark.
"""

import grpc

from cri_shim.serve import methods
from cri_shim.serve.upstream import CHANNEL_OPTIONS

_SERVICES = {
    "ImageService": ("ListImages", "ImageStatus", "PullImage", "RemoveImage", "ImageFsInfo"),
    "RuntimeService": ("Version", "Status"),
}


class CRIClient:
    """
    Calls a CRI socket: C{client.PullImage(request)} with a message of the
    client's L{api} module; returns the parsed response.

    :param socket_path: the UNIX socket to call.
    :param package: C{"runtime.v1"} or C{"runtime.v1alpha2"}.
    """

    def __init__(self, socket_path, package="runtime.v1"):
        self.api = methods.API[package]
        self._channel = grpc.insecure_channel("unix:" + socket_path, options=CHANNEL_OPTIONS)
        for service, names in _SERVICES.items():
            for name in names:
                response_type = getattr(self.api, name + "Response")
                setattr(self, name, self._channel.unary_unary(
                    methods.path(package, service, name),
                    request_serializer=_serialize,
                    response_deserializer=response_type.FromString))

    def image(self, name):
        """
        :return: an C{ImageSpec} for C{name}.
        """
        return self.api.ImageSpec(image=name)

    def close(self):
        """
        Close the channel.
        """
        self._channel.close()


def _serialize(message):
    return message.SerializeToString()
