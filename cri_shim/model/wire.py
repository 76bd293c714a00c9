# -*- test-case-name: tests.model.test_wire -*-
"""
Read and replace one string field deep inside an encoded protobuf message
without decoding the rest, so that every other byte of the message is
relayed as it came: fields this shim does not declare, unknown fields and
the order of map entries.  Pure.

A field path is a tuple of field numbers, e.g. C{(2, 2, 1)} for
C{CreateContainerRequest.config.image.image}: every field on the way is
length-delimited (a message, or the string at the end).
"""

#: C{CreateContainerRequest.config.image.image} (CRI v1 and v1alpha2).
CONTAINER_IMAGE = (2, 2, 1)

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
    """
    The bytes are not an encoded protobuf message.
    """


def _read_varint(data, position):
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
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


def _fields(data):
    """
    :return: an iterator of C{(number, wire type, start, value start, end)}
        for each top-level field of C{data}.
    :raise WireError: on bytes that are no message (groups included: CRI
        has none).
    """
    position = 0
    while position < len(data):
        start = position
        tag, position = _read_varint(data, position)
        number, kind = tag >> 3, tag & 7
        value_start = position
        if kind == _VARINT:
            _, position = _read_varint(data, position)
        elif kind == _FIXED64:
            position += 8
        elif kind == _FIXED32:
            position += 4
        elif kind == _LENGTH:
            length, value_start = _read_varint(data, position)
            position = value_start + length
        else:
            raise WireError("unsupported wire type {} at byte {}".format(kind, start))
        if number == 0 or position > len(data):
            raise WireError("invalid or truncated field at byte {}".format(start))
        yield number, kind, start, value_start, position


def split(data):
    """
    :return: the top-level fields of C{data} as C{(number, wire type,
        start, value start, end)} tuples, in order: L{_fields} with a fast
        path for one-byte tags and short lengths (a ListImages answer has
        hundreds of fields).
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
                length, value_start = _read_varint(data, position + 1)
            end = value_start + length
            if tag >> 3 == 0 or end > size:
                raise WireError("invalid or truncated field at byte {}".format(position))
            fields.append((tag >> 3, _LENGTH, position, value_start, end))
            position = end
            continue
        field = next(_fields(data[position:]))
        fields.append(field[:2] + tuple(offset + position for offset in field[2:]))
        position += field[4]
    return fields


def field(number, value):
    """
    :return: the length-delimited field C{number} holding C{value} (bytes).
    """
    return _varint(number << 3 | _LENGTH) + _varint(len(value)) + value


def strings_at(data, path):
    """
    :return: the values of every occurrence of the string at C{path}, in
        order (the last one is the value a decoder sees).
    :raise WireError: on bytes that are no message, or a string that is not
        UTF-8.
    """
    found = []
    for number, kind, _, value_start, end in _fields(data):
        if number != path[0] or kind != _LENGTH:
            continue
        value = bytes(data[value_start:end])
        if len(path) > 1:
            found.extend(strings_at(value, path[1:]))
            continue
        try:
            found.append(value.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise WireError("field {} is not UTF-8: {}".format(number, e))
    return found


def replace_strings(data, path, text):
    """
    :return: C{data} with every occurrence of the string at C{path} set to
        C{text}, the lengths of the messages around it adjusted, and every
        other byte unchanged.
    :raise WireError: on bytes that are no message.
    """
    out = bytearray()
    copied = 0
    for number, kind, start, value_start, end in _fields(data):
        if number != path[0] or kind != _LENGTH:
            continue
        if len(path) > 1:
            value = replace_strings(data[value_start:end], path[1:], text)
        else:
            value = text.encode("utf-8")
        out += data[copied:start]
        out += field(number, value)
        copied = end
    out += data[copied:]
    return bytes(out)


#: C{CreateContainerRequest.sandbox_config} (CRI v1 and v1alpha2).
CONTAINER_SANDBOX = (3,)


def messages_at(data, path):
    """
    :return: the bytes of every occurrence of the message at C{path}, in
        order: joined, they decode as the one message a decoder sees (it
        merges repeated occurrences).
    :raise WireError: on bytes that are no message.
    """
    found = []
    for number, kind, _, value_start, end in _fields(data):
        if number != path[0] or kind != _LENGTH:
            continue
        value = bytes(data[value_start:end])
        found.extend(messages_at(value, path[1:]) if len(path) > 1 else [value])
    return found
