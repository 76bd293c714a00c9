"""
Tests for L{cri_shim.model.wire}: plain tables, checked against protobuf's
own decoder.
"""

import random
import time

from twisted.trial.unittest import SynchronousTestCase

from cri_shim.model import wire
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

    def test_messages(self):
        """
        The sandbox config of a CreateContainerRequest is read as protobuf
        reads it: repeated occurrences joined merge as a decoder merges
        them; absent, there is none.
        """
        first = API.PodSandboxConfig()
        first.metadata.name, first.metadata.namespace = "web", "team-a"
        second = API.PodSandboxConfig()
        second.metadata.namespace = "team-b"
        second.labels["app"] = "web"
        raw = (_request("nginx") + _field(3, first.SerializeToString()) + UNKNOWN +
               _field(3, second.SerializeToString()))
        found = wire.messages_at(raw, wire.CONTAINER_SANDBOX)
        self.assertEqual(found, [first.SerializeToString(), second.SerializeToString()])
        merged = API.PodSandboxConfig.FromString(b"".join(found))
        self.assertEqual((merged.metadata.name, merged.metadata.namespace, dict(merged.labels)),
                         ("web", "team-b", {"app": "web"}))
        self.assertEqual(wire.messages_at(_request("nginx"), wire.CONTAINER_SANDBOX), [])
        self.assertEqual(wire.messages_at(raw, (2, 2)), [
            API.ImageSpec(image="nginx", annotations={"z": "1", "a": "2"}).SerializeToString(
                deterministic=True)])

    def test_map_strings(self):
        """
        Each string at a path is changed on its own; the rest, and strings
        left alone, are kept byte for byte; with no change the bytes given
        come back as they are.
        """
        listed = b"".join(_field(1, _field(4, _field(1, name)) + UNKNOWN)
                          for name in (b"hub/a:1", b"keep:1", b"hub/b:1" * 30))
        changed = wire.map_strings(listed, (1, 4, 1), lambda name: name.replace("hub/", "x/"))
        self.assertEqual(changed, b"".join(_field(1, _field(4, _field(1, name)) + UNKNOWN)
                                           for name in (b"x/a:1", b"keep:1",
                                                        b"x/b:1" * 30)))
        self.assertIs(wire.map_strings(listed, (1, 4, 1), lambda name: name), listed)
        self.assertEqual(wire.map_strings(b"", (1, 4, 1), lambda name: "x"), b"")
        with self.assertRaises(WireError) as caught:
            wire.map_strings(_field(1, _field(4, _field(1, b"ok")) + _field(4, _field(1, b"\xff"))),
                             (1, 4, 1), lambda name: name)
        self.assertIn("not UTF-8", str(caught.exception))

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
                     # Field number 0 in longer tags; varints of eleven bytes.
                     b"\x80\x80\x00\x01", b"\x81\x00" + bytes(8), b"\x82\x00\x00",
                     b"\x85\x00" + bytes(4), b"\x88" + b"\x80" * 9 + b"\x00\x00",
                     b"\x08" + b"\x80" * 10 + b"\x00",
                     _field(2, _field(2, _field(1, b"\xff")))]:
            self.assertRaises(WireError, strings_at, data, CONTAINER_IMAGE)


#: A path through generated messages: C{ImageStatusResponse.image.spec.image}.
STATUS_IMAGE = (1, 7, 1)
#: Field numbers none of the messages on L{STATUS_IMAGE} declares.
UNDECLARED = (9, 15, 21, 100, 16383, 16384, 2 ** 29 - 1)


def _varint(value, padding=0):
    """
    :return: C{value} as a varint, padded with C{padding} zero groups.
    """
    groups = []
    while True:
        groups.append(value & 0x7F)
        value >>= 7
        if not value:
            break
    groups += [0] * padding
    return bytes([group | 0x80 for group in groups[:-1]] + groups[-1:])


def _any_field(number, kind, value, tag_padding=0, length_padding=0):
    """
    :return: field C{number} of wire type C{kind}: C{value} is the encoded
        value (varint, 8 or 4 bytes) or the payload (length-delimited).
    """
    tag = _varint(number << 3 | kind, tag_padding)
    if kind == 2:
        return tag + _varint(len(value), length_padding) + value
    return tag + value


def _random_message(rng, path, image):
    """
    :return: a message with fields off C{path} of every kind, in every
        form protobuf reads, and C{0..3} fields on it, each holding another
        such message (or, at its end, a string from C{image()}).
    """
    fields = []
    for _ in range(rng.randrange(8)):
        if rng.random() < 0.3:
            payload = (image().encode("utf-8") if len(path) == 1 else
                       _random_message(rng, path[1:], image))
            fields.append(_any_field(path[0], 2, payload, rng.choice((0, 0, 1)),
                                     rng.choice((0, 0, 1, 3))))
            continue
        # Protobuf reads varints of ten bytes at most, tags of five.
        kind, number = rng.choice((0, 1, 2, 5)), rng.choice(UNDECLARED)
        value = {0: rng.choice((_varint(0), _varint(300, 1), _varint(2 ** 63))),
                 1: bytes(8), 5: bytes(4),
                 2: b"u" * rng.choice((0, 1, 127, 128, 300))}[kind]
        fields.append(_any_field(number, kind, value, rng.choice((0, 0, int(number < 2 ** 20))),
                                 rng.choice((0, 0, 1))))
    return b"".join(fields)


class SpliceTests(SynchronousTestCase):
    """
    Only the string's bytes change, and the lengths of the fields around
    it; the walk reads what protobuf reads.
    """

    def test_other_bytes_kept(self):
        """
        Fields off the path in every form (one- and multi-byte tags,
        zero-padded tags and lengths, values longer than 127 bytes), a
        field on the path with a zero-padded tag, and one that holds no
        image, are relayed byte for byte.
        """
        def request(image):
            unknown = (b"\x78\x01" + b"\xf8\x80\x80\x01\x00" + _any_field(21, 2, b"x", 2, 3)
                       + _any_field(16384, 1, bytes(8)) + _any_field(9, 5, bytes(4))
                       + _any_field(15, 2, b"y" * 300) + _any_field(15, 2, b"z" * 127, 0, 1))
            spec = unknown + _any_field(1, 2, image.encode("ascii"), 1) + unknown
            config = unknown + _any_field(2, 2, spec, 2) + unknown
            empty = _any_field(2, 2, unknown, 0, 2)
            return unknown + empty + _any_field(2, 2, config, 1) + unknown

        for image in ("a", "sealos.hub:5000/library/nginx:latest" * 5):
            self.assertEqual(replace_strings(request("nginx"), CONTAINER_IMAGE, image),
                             request(image))
        self.assertEqual(strings_at(request("nginx"), CONTAINER_IMAGE), ["nginx"])

    def test_as_protobuf_reads(self):
        """
        In generated messages of every shape, the strings found end with
        the one protobuf's decoder sees (repeated messages merged, the last
        string kept), and after the replacement protobuf sees the new
        string and everything else as before.
        """
        rng = random.Random(17)
        images = iter(range(10 ** 6))

        def image():
            return rng.choice(["", "é", "nginx:{}".format(next(images)), "n" * 200])

        for _ in range(400):
            raw = _random_message(rng, STATUS_IMAGE, image)
            found = strings_at(raw, STATUS_IMAGE)
            decoded = API.ImageStatusResponse.FromString(raw)
            self.assertEqual(decoded.image.spec.image, found[-1] if found else "")
            replaced = API.ImageStatusResponse.FromString(
                replace_strings(raw, STATUS_IMAGE, "new"))
            if found:
                self.assertEqual(replaced.image.spec.image, "new")
                replaced.image.spec.image = decoded.image.spec.image
            self.assertEqual(replaced, decoded)

    def test_across_strides(self):
        """
        A message of many strides, with fields across their edges, is read
        and rewritten whole.
        """
        unknown = b"".join(_any_field(15, 2, b"x" * (size % 300)) for size in range(3000))
        raw = _field(1, b"pod") + unknown + _request("nginx", unknown)
        self.assertGreater(len(raw), 4 * wire._STRIDE)
        self.assertEqual(strings_at(raw, CONTAINER_IMAGE), ["nginx"])
        self.assertEqual(replace_strings(raw, CONTAINER_IMAGE, "b"),
                         _field(1, b"pod") + unknown + _request("b", unknown))

    def test_skipped_by_strides(self):
        """
        No run of fields off the path is skipped in one go past
        L{wire._STRIDE} bytes (the expression engine holds the GIL), and
        other threads are let run after each stride.
        """
        spans, pauses = [], []
        skip = wire._skip
        self.patch(wire, "_let_others_run", lambda: pauses.append(True))

        class Recording:
            def __init__(self, pattern):
                self.pattern = pattern

            def match(self, data, position, end):
                spans.append(end - position)
                return self.pattern.match(data, position, end)

        self.patch(wire, "_skip", lambda number: Recording(skip(number)))
        raw = _request("nginx", b"\x78\x01" * (3 * wire._STRIDE))
        self.assertEqual(replace_strings(raw, CONTAINER_IMAGE, "b"),
                         _request("b", b"\x78\x01" * (3 * wire._STRIDE)))
        self.assertEqual(max(spans), wire._STRIDE)
        # Six strides of unknown fields: about a pause per stride.
        self.assertGreaterEqual(len(pauses), 5)
        self.assertLessEqual(len(pauses), len(raw) // wire._STRIDE + 1)

    def test_occurrences_bounded(self):
        """
        A message with more than L{wire.MAX_OCCURRENCES} fields on the path
        is refused: each costs a step in Python.
        """
        empty = _field(2, b"")
        # The request itself has three: config, image and its string.
        fits = empty * (wire.MAX_OCCURRENCES - 3) + _request("a")
        self.assertEqual(strings_at(fits, CONTAINER_IMAGE), ["a"])
        self.assertEqual(replace_strings(fits, CONTAINER_IMAGE, "b"),
                         empty * (wire.MAX_OCCURRENCES - 3) + _request("b"))
        self.assertRaises(WireError, strings_at, empty + fits, CONTAINER_IMAGE)
        self.assertRaises(WireError, replace_strings, empty * (wire.MAX_OCCURRENCES + 1),
                          CONTAINER_IMAGE, "b")


def _cost(function, *args):
    """
    :return: the least CPU time of this thread that three calls of
        C{function} took (the CPU time other work takes is not counted).
    """
    costs = []
    for _ in range(3):
        started = time.thread_time()
        function(*args)
        costs.append(time.thread_time() - started)
    return min(costs)


def _loop(count):
    for _ in range(count):
        pass


class CostTests(SynchronousTestCase):
    """
    What a request of tiny unknown fields costs to read and rewrite, in CPU
    time (not wall-clock time: a loaded machine takes longer for both).
    """

    #: Fields in the smaller request (a 16 MiB request has 8 Mi of them).
    count = 50000

    def requests(self, count):
        return [_request("nginx", unit * count) for unit in (b"\x78\x01", b"\x7a\x01x")]

    def test_linear(self):
        """
        Four times the fields cost about four times as much (within a
        factor of two), not sixteen.
        """
        for small, large in zip(self.requests(self.count), self.requests(4 * self.count)):
            for function, args in ((strings_at, ()), (replace_strings, ("b",))):
                ratio = (_cost(function, large, CONTAINER_IMAGE, *args) /
                         _cost(function, small, CONTAINER_IMAGE, *args))
                self.assertLess(ratio, 8, function)

    def test_no_python_step_per_field(self):
        """
        Each field off the path costs less than a dozen iterations of an
        empty Python loop (about four, against some forty when each was read
        in Python): they are skipped in C.
        """
        for request in self.requests(4 * self.count):
            for function, args in ((strings_at, ()), (replace_strings, ("b",))):
                self.assertLess(_cost(function, request, CONTAINER_IMAGE, *args),
                                12 * _cost(_loop, 4 * self.count), function)


class SplitTests(SynchronousTestCase):
    """
    L{wire.split} and L{wire.field}, which ListImages answers go through.
    """

    def test_split(self):
        """
        Each top-level field is told with its number, wire type, start,
        value start and end: one-byte and longer tags and lengths, every
        wire type, a ten-byte length and a two-byte field at the end.
        """
        fields = [_any_field(1, 2, b"x" * 200), _any_field(1, 0, b"\x96\x01"),
                  _any_field(1, 1, bytes(8)), _any_field(1, 5, bytes(4)),
                  _any_field(20, 2, b"abc"), _any_field(1, 2, b"y", 0, 9), _field(1, b"")]
        raw = b"".join(fields)
        expected, start = [], 0
        for piece, (number, kind, value_start) in zip(fields, [
                (1, 2, 3), (1, 0, 1), (1, 1, 1), (1, 5, 1), (20, 2, 3), (1, 2, 11), (1, 2, 2)]):
            expected.append((number, kind, start, start + value_start, start + len(piece)))
            start += len(piece)
        self.assertEqual(wire.split(raw), expected)
        self.assertEqual(wire.split(b""), [])

    def test_split_refuses(self):
        """
        Field number 0, truncated fields and a lone tag raise L{WireError}.
        """
        for data in [b"\x02\x00\x00", b"\x0a\x05ab", b"\x0a", b"\x09" + bytes(7),
                     b"\x0d" + bytes(3)]:
            self.assertRaises(WireError, wire.split, data)

    def test_field(self):
        """
        L{wire.field} encodes a length-delimited field as protobuf does.
        """
        self.assertEqual(wire.field(1, b"x"), b"\x0a\x01x")
        self.assertEqual(wire.field(20, b"y" * 200), _any_field(20, 2, b"y" * 200))
