"""
Tests for L{cri_shim.model.wire}: plain tables, checked against protobuf's
own decoder.
"""

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model.wire import CONTAINER_IMAGE, WireError, replace_strings, strings_at
from cri_shim.serve import methods

API = methods.API["runtime.v1"]
# An unknown field (number 9999, length-delimited "future").
UNKNOWN = b"\xfa\xf0\x04\x06future"


def _field(number, payload):
    """
    :return: a length-delimited field (number < 16), its length as a varint.
    """
    length, out = len(payload), bytearray()
    while length >= 0x80:
        out.append(length & 0x7F | 0x80)
        length >>= 7
    out.append(length)
    return bytes([number << 3 | 2]) + bytes(out) + payload


def _request(image, padding=b""):
    # Deterministic: protobuf 3.21 (Debian's) writes map entries in an order
    # of its own that may differ between two messages.
    spec = API.ImageSpec(image=image, annotations={"z": "1", "a": "2"}).SerializeToString(
        deterministic=True)
    # A varint, a fixed64 and a fixed32 field around the image.
    config = b"\x18\x01" + _field(2, spec) + b"\x21" + b"\x00" * 8 + b"\x2d" + b"\x00" * 4
    return _field(1, b"pod") + _field(2, config + padding) + UNKNOWN


class WireTests(SynchronousTestCase):
    def test_read(self):
        """
        The image of a CreateContainerRequest is read where protobuf reads
        it; absent, there is none.
        """
        self.assertEqual(strings_at(_request("nginx"), CONTAINER_IMAGE), ["nginx"])
        self.assertEqual(strings_at(_field(1, b"pod"), CONTAINER_IMAGE), [])

    def test_replace(self):
        """
        Replacing the image gives the bytes the same request with the other
        image has, lengths of two bytes and more included.
        """
        for padding in (b"", _field(15, b"x" * 300)):
            for image in ("a", "sealos.hub:5000/library/nginx:latest" * 5):
                self.assertEqual(replace_strings(_request("nginx", padding), CONTAINER_IMAGE,
                                                 image),
                                 _request(image, padding))
                self.assertEqual(
                    API.ImageSpec.FromString(
                        replace_strings(API.ImageSpec(image="b").SerializeToString(), (1,),
                                        image)).image, image)

    def test_every_occurrence(self):
        """
        Every occurrence is replaced (a decoder merges repeated messages and
        keeps the last string).
        """
        twice = _request("one") + _request("two")
        self.assertEqual(strings_at(twice, CONTAINER_IMAGE), ["one", "two"])
        self.assertEqual(replace_strings(twice, CONTAINER_IMAGE, "x"),
                         _request("x") + _request("x"))

    def test_not_a_message(self):
        """
        Bytes that are no message raise L{WireError}.
        """
        for data in [b"\x12\x05ab", b"\x0b", b"\x12", b"\x08\xff", b"\x00\x01",
                     _field(2, _field(2, _field(1, b"\xff")))]:
            self.assertRaises(WireError, strings_at, data, CONTAINER_IMAGE)
