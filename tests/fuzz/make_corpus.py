#!/usr/bin/env python3
"""Writes the seed corpus of decode_envelope_fuzz into tests/fuzz/corpus/ (design §5).

Valid envelopes in several shapes, so the fuzzer starts from inputs that reach deep into the
decoder instead of having to discover UUID text and key names itself. Run it again after a
change to the wire format; the output is deterministic.
"""
import pathlib
import struct


def pack(value):
    """The msgpack subset the envelope needs, in the smallest encodings."""
    if isinstance(value, bool):
        return b"\xc3" if value else b"\xc2"
    if value is None:
        return b"\xc0"
    if isinstance(value, int):
        if 0 <= value < 128:
            return bytes([value])
        if -32 <= value < 0:
            return struct.pack(">b", value)
        return b"\xd3" + struct.pack(">q", value) if value < 0 else b"\xcf" + struct.pack(">Q", value)
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode()
        return (bytes([0xA0 | len(data)]) if len(data) < 32 else b"\xd9" + bytes([len(data)])) + data
    if isinstance(value, bytes):
        return b"\xc4" + bytes([len(value)]) + value
    if isinstance(value, list):
        return bytes([0x90 | len(value)]) + b"".join(pack(item) for item in value)
    if isinstance(value, dict):
        return bytes([0x80 | len(value)]) + b"".join(pack(k) + pack(v) for k, v in value.items())
    if isinstance(value, Raw):
        return value.data
    raise TypeError(type(value))


class Raw:
    """Bytes written as they are: other integer widths, ext types."""

    def __init__(self, data):
        self.data = data


ID = "0190c2a4-1234-7abc-8def-0123456789ab"
MINIMAL = {"v": 1, "id": ID, "kind": "ping", "to": "pong", "sent_at": 0, "body": b""}
FULL = {"v": 1, "id": ID, "kind": "payment-completed", "from": "payments/instance-7",
        "to": "orders/2", "corr": "saga-42", "cause": "0190c2a4-0000-7000-8000-000000000001",
        "promise": "execution-9.3", "sent_at": 1_700_000_000_123, "deadline": 1_700_000_060_000,
        "headers": {"trace": "abc", "empty": ""}, "body": b"\x00\x01\x00\xff\x00\xc1\x00"}
SEEDS = {
    "minimal": MINIMAL,
    "full": FULL,
    "reordered": dict(reversed(list(FULL.items()))),
    "wide_integers": dict(MINIMAL, v=Raw(b"\xcc\x01"), sent_at=Raw(b"\xce\xee\x6b\x28\x00"),
                          deadline=Raw(b"\xd3" + struct.pack(">q", 5))),
    "unknown_keys": dict(MINIMAL, **{"x-nested": {"a": [1, -2, 1.5, None, True, {"b": b"\x00"}]},
                                     "x-ext": Raw(b"\xd6\xff\x00\x00\x00\x01"),
                                     "x-big": Raw(b"\xcf" + b"\xff" * 8)}),
}

if __name__ == "__main__":
    directory = pathlib.Path(__file__).parent / "corpus"
    directory.mkdir(exist_ok=True)
    for name, envelope in SEEDS.items():
        (directory / f"{name}.msgpack").write_bytes(pack(envelope))
