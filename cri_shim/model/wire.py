# -*- test-case-name: tests.model.test_wire -*-
"""
Read and replace one string field deep inside an encoded protobuf message
without decoding the rest, so that every other byte of the message is
relayed as it came: fields this shim does not declare, unknown fields and
the order of map entries.  Pure (but for pausing to let other threads
run).

A field path is a tuple of field numbers, e.g. C{(2, 2, 1)} for
C{CreateContainerRequest.config.image.image}: every field on the way is
length-delimited (a message, or the string at the end).

The walk costs time in proportion to the bytes, and little of it: runs of
fields off the path (unknown fields included, however small) are skipped by
one regular expression, in C; Python steps only onto the fields on the
path, onto fields longer than 127 bytes, and onto bytes that are no field
(to raise L{WireError}).  A request holding more than L{MAX_OCCURRENCES}
fields on the path is refused: kubelet sends one of each.  Every
L{_STRIDE} bytes the walk lets other threads run.
"""

import re
import time

#: C{CreateContainerRequest.config.image.image} (CRI v1 and v1alpha2).
CONTAINER_IMAGE = (2, 2, 1)
#: Fields on a path read at most in one message (each costs a Python step).
MAX_OCCURRENCES = 1024

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
#: Longest varint read (the bits of a 64-bit value).
_VARINT_BYTES = 10
#: Longest length-delimited value the skipping expression reads.
_SHORT = 0x7F
#: Bytes skipped in one go, and read between two pauses for other threads.
#: The expression engine holds the GIL while it runs (a third of a
#: millisecond for this many) and keeps some state for every field it has
#: matched (about 1.5 MiB for this many one-byte fields).
_STRIDE = 16 * 1024


class WireError(ValueError):
    """
    The bytes are not an encoded protobuf message.
    """


def _read_varint(data, position, end):
    value = shift = 0
    while True:
        if position >= end or shift > 63:
            raise WireError("truncated or overlong varint at byte {}".format(position))
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_at(data, position, end):
    """
    :return: C{(number, wire type, length start, value start, next)} for
        the field at C{position} of C{data[:end]}: where its tag ends (its
        length starts), where its value starts and where the next field
        starts.
    :raise WireError: on bytes that are no field (groups included: CRI has
        none).
    """
    tag, length_start = _read_varint(data, position, end)
    number, kind = tag >> 3, tag & 7
    value_start = field_end = length_start
    if kind == _VARINT:
        _, field_end = _read_varint(data, length_start, end)
    elif kind == _FIXED64:
        field_end += 8
    elif kind == _FIXED32:
        field_end += 4
    elif kind == _LENGTH:
        length, value_start = _read_varint(data, length_start, end)
        field_end = value_start + length
    else:
        raise WireError("unsupported wire type {} at byte {}".format(kind, position))
    if number == 0 or field_end > end:
        raise WireError("invalid or truncated field at byte {}".format(position))
    return number, kind, length_start, value_start, field_end


def _byte(value):
    return re.escape(bytes([value]))


def _varint_forms(value):
    """
    :return: two expressions that match, between them, every encoding
        L{_read_varint} reads as C{value}: the shortest, and the ones
        padded with zero groups.  (Each starts with a literal byte, which
        the expression engine tests at once.)
    """
    shortest = _varint(value)
    head = b"".join(_byte(byte) for byte in shortest[:-1])
    return [head + _byte(shortest[-1]),
            head + _byte(shortest[-1] | 0x80) + b"\\x80{0,%d}\\x00" % (
                _VARINT_BYTES - len(shortest) - 1)]


def _skipping(number):
    """
    :return: a compiled expression matching a run (possibly empty) of
        well-formed fields other than length-delimited field C{number},
        each of them length-delimited of at most L{_SHORT} bytes, or not
        length-delimited.  It matches only what L{_field_at} reads.
    """
    varint = b"[\\x80-\\xff]{0,%d}[\\x00-\\x7f]" % (_VARINT_BYTES - 1)
    short = b"|".join(form + b"[\\s\\S]{%d}" % length for length in range(_SHORT + 1)
                      for form in _varint_forms(length))
    # The most common kinds first: each alternative tried costs time.
    values = {_LENGTH: b"(?:" + short + b")", _VARINT: varint, _FIXED32: b"[\\s\\S]{4}",
              _FIXED64: b"[\\s\\S]{8}"}
    one_byte, longer = [], []
    for kind, value in values.items():
        # Tags of one byte, number 0 and the path's field left out...
        tags = [tag for tag in range(0x08 | kind, 0x80, 8)
                if (tag >> 3, kind) != (number, _LENGTH)]
        one_byte.append(b"[" + b"".join(_byte(tag) for tag in tags) + b"]" + value)
        # ...and of two bytes or more, the same left out in every form.
        excluded = _varint_forms(kind)
        if kind == _LENGTH:
            excluded += _varint_forms(number << 3 | kind)
        firsts = b"".join(_byte(tag) for tag in range(0x80 | kind, 0x100, 8))
        longer.append(b"(?!%s)[%s][\\x80-\\xff]{0,%d}[\\x00-\\x7f]%s" % (
            b"|".join(excluded), firsts, _VARINT_BYTES - 2, value))
    # Each field matches one way at most, and nothing follows the run: the
    # engine never backtracks into it.  (Python 3.11's possessive *+ would
    # save the state it keeps per field; L{_STRIDE} bounds that instead.)
    return re.compile(b"(?:" + b"|".join(one_byte + longer) + b")*")


_SKIPPING = {}


def _skip(number):
    """
    :return: L{_skipping} for C{number}, compiled once.
    """
    try:
        return _SKIPPING[number]
    except KeyError:
        return _SKIPPING.setdefault(number, _skipping(number))


def split(data):
    """
    :return: the top-level fields of C{data} as C{(number, wire type,
        start, value start, end)} tuples, in order, with a fast path for
        one-byte tags and short lengths (a ListImages answer has hundreds
        of fields).
    :raise WireError: on bytes that are no message.
    """
    fields = []
    position, size = 0, len(data)
    while position < size:
        tag = data[position]
        if tag & 7 == _LENGTH and tag < 0x80 and position + 2 < size:
            length = data[position + 1]
            value_start = position + 2
            if length & 0x80:
                length, value_start = _read_varint(data, position + 1, size)
            end = value_start + length
            if tag >> 3 == 0 or end > size:
                raise WireError("invalid or truncated field at byte {}".format(position))
            fields.append((tag >> 3, _LENGTH, position, value_start, end))
            position = end
            continue
        number, kind, _, value_start, end = _field_at(data, position, size)
        fields.append((number, kind, position, value_start, end))
        position = end
    return fields


def field(number, value):
    """
    :return: the length-delimited field C{number} holding C{value} (bytes).
    """
    return _varint(number << 3 | _LENGTH) + _varint(len(value)) + value


def _let_others_run():
    """
    Let the threads waiting for the GIL take it (sleeping releases it), so
    that a long walk delays them by a stride, not by the interpreter's
    switch interval (5 ms) each time they wake.
    """
    time.sleep(0)


def _walk(data, path, start, end, budget):
    """
    Find the fields at C{path} in C{data[start:end]}.

    :param budget: a one-item list: how many more fields on the path may
        be read.
    :return: the fields at C{path[0]} that hold a field at the end of the
        path (or are it), in order, as C{(length start, value start, end,
        inner)}: C{inner} is what the walk found in that field for
        C{path[1:]}, or C{None} at the end of the path.
    :raise WireError: on bytes that are no message, or past the budget.
    """
    skip = _skip(path[0])
    found = []
    position = start
    pause = start + _STRIDE
    while position < end:
        if position >= pause:
            _let_others_run()
            pause = position + _STRIDE
        position = skip.match(data, position, min(position + _STRIDE, end)).end()
        if position == end:
            break
        number, kind, length_start, value_start, position = _field_at(data, position, end)
        if number == path[0] and kind == _LENGTH:
            budget[0] -= 1
            if budget[0] < 0:
                raise WireError("more than {} fields on the path {}".format(
                    MAX_OCCURRENCES, path))
            inner = None
            if len(path) > 1:
                inner = _walk(data, path[1:], value_start, position, budget)
            if inner != []:
                found.append((length_start, value_start, position, inner))
    return found


def _find(data, path):
    return _walk(data, path, 0, len(data), [MAX_OCCURRENCES])


def _values(data, fields, found):
    """
    :return: C{found} with C{(value start, bytes)} of each field at the end
        of the path in C{fields} (from L{_walk}) added, in order.
    """
    for _, value_start, end, inner in fields:
        if inner is not None:
            _values(data, inner, found)
        else:
            found.append((value_start, bytes(data[value_start:end])))
    return found


def strings_at(data, path):
    """
    :return: the values of every occurrence of the string at C{path}, in
        order (the last one is the value a decoder sees).
    :raise WireError: on bytes that are no message, or a string that is not
        UTF-8.
    """
    return [_text(value_start, value)
            for value_start, value in _values(data, _find(data, path), [])]


def _text(value_start, value):
    """
    :return: the string a field's C{value} (bytes from C{value_start})
        holds.
    :raise WireError: when it is not UTF-8.
    """
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError("the string at byte {} is not UTF-8: {}".format(value_start, e))


#: C{CreateContainerRequest.sandbox_config} (CRI v1 and v1alpha2).
CONTAINER_SANDBOX = (3,)
#: C{ContainerStatusResponse.status.image.image} and C{.status.image_ref}.
STATUS_IMAGE, STATUS_IMAGE_REF = (1, 8, 1), (1, 9)
#: C{ListContainersResponse.containers[].image.image} and C{.image_ref}.
LISTED_IMAGE, LISTED_IMAGE_REF = (1, 4, 1), (1, 5)


def messages_at(data, path):
    """
    :return: the bytes of every occurrence of the message at C{path}, in
        order: joined, they decode as the one message a decoder sees (it
        merges repeated occurrences).
    :raise WireError: on bytes that are no message.
    """
    return [value for _, value in _values(data, _find(data, path), [])]


def _spliced(data, fields, start, end, value):
    """
    :param value: a callable from the string of a field at the end of the
        path (bytes) to its new bytes.
    :return: C{(pieces, size)}: C{data[start:end]} with the string of
        every field in C{fields} replaced by C{value}, as byte pieces, and
        the length of their concatenation.  Only the strings and the
        lengths of the fields around them change.
    """
    pieces, size, copied = [], end - start, start
    for length_start, value_start, field_end, inner in fields:
        if inner is None:
            new = value(bytes(data[value_start:field_end]))
            body, body_size = [new], len(new)
        else:
            body, body_size = _spliced(data, inner, value_start, field_end, value)
        length = _varint(body_size)
        pieces += [data[copied:length_start], length]
        pieces += body
        size += len(length) + body_size - (field_end - length_start)
        copied = field_end
    pieces.append(data[copied:end])
    return pieces, size


def replace_strings(data, path, text):
    """
    :return: C{data} with every occurrence of the string at C{path} set to
        C{text}, the lengths of the messages around it adjusted, and every
        other byte unchanged.
    :raise WireError: on bytes that are no message.
    """
    encoded = text.encode("utf-8")
    pieces, _ = _spliced(memoryview(data), _find(data, path), 0, len(data),
                         lambda old: encoded)
    return b"".join(pieces)


def map_strings(data, path, change):
    """
    :param change: a callable from each string at C{path} to its new value
        (the same string to keep it).
    :return: C{data} with each string at C{path} changed by C{change}, the
        lengths of the messages around it adjusted and every other byte
        unchanged; C{data} itself when no string changes.
    :raise WireError: on bytes that are no message, or a string that is not
        UTF-8.
    """
    fields = _find(data, path)
    new = {}
    for value_start, value in _values(data, fields, []):
        old = _text(value_start, value)
        changed = change(old)
        if changed != old:
            new[value] = changed.encode("utf-8")
    if not new:
        return data
    pieces, _ = _spliced(memoryview(data), fields, 0, len(data),
                         lambda old: new.get(old, old))
    return b"".join(pieces)
