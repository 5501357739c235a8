#!/usr/bin/env python3
"""Writes the seed corpus of the frame fuzzer to tests/fuzz/corpus/frame/ (committed; rerun
after a change here). Frames are encoded here from rpc/WIRE.md alone, independently of the C
codec, so the seeds also check that the page is enough to implement the protocol."""
import os
import struct

HEADER = struct.Struct("<HBBBBHIIII")  # magic version type flags status reserved id method timeout len
MAGIC, VERSION = 0x5247, 1
REQUEST, RESPONSE, CANCEL, PING, PONG, GOAWAY = 1, 2, 3, 4, 5, 6


def fnv1a32(name):
    h = 2166136261
    for b in name.encode("utf-8"):
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def frame(ftype, request_id=0, body=b"", status=0, method="", timeout_us=0, body_len=None,
          magic=MAGIC, version=VERSION, flags=0, reserved=0):
    method_id = fnv1a32(method) if method else 0
    n = len(body) if body_len is None else body_len
    return HEADER.pack(magic, version, ftype, flags, status, reserved, request_id, method_id,
                       timeout_us, n) + body


HELLO = b"\x0a\x05hello"  # demo.EchoRequest{text: "hello"}
REQ = frame(REQUEST, 7, HELLO, method="demo.Echo/Say", timeout_us=250000)

SEEDS = {
    "request": REQ,
    "request_empty_body_no_deadline": frame(REQUEST, 1, method="demo.Echo/Ping"),
    "response_ok": frame(RESPONSE, 7, HELLO),
    "response_error": frame(RESPONSE, 8, b"unknown method", status=12),
    "cancel": frame(CANCEL, 7),
    "ping": frame(PING, 0xDEADBEEF),
    "pong": frame(PONG, 0xDEADBEEF),
    "goaway_reason": frame(GOAWAY, 41, b"server shutting down"),
    "goaway_empty": frame(GOAWAY, 0),
    "pipelined": REQ + frame(PING, 1) + frame(CANCEL, 7) + frame(REQUEST, 9, b"\x08\x01", method="demo.Echo/Say"),
    # Over max_body 16 (the fuzzer's smallest but one), then a valid frame: a server skips it.
    "too_big_then_ping": frame(REQUEST, 3, b"x" * 20, method="demo.Echo/Say") + frame(PING, 4),
    "truncated_header": REQ[:13],
    "truncated_body": REQ[:-3],
    "bad_magic": frame(REQUEST, 7, HELLO, magic=0x4752, method="demo.Echo/Say"),
    "bad_version": frame(PING, 1, version=2),
    "bad_flags": frame(CANCEL, 1, flags=1),
    "bad_reserved": frame(PONG, 1, reserved=0x100),
    "ping_with_body": frame(PING, 1, b"!"),
    "response_status_17": frame(RESPONSE, 1, status=17),
    "over_hard_cap": frame(REQUEST, 1, body_len=(64 << 20) + 1, method="demo.Echo/Say"),
    "over_default_max": frame(REQUEST, 1, body_len=(4 << 20) + 1, method="demo.Echo/Say"),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "frame")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(SEEDS), out))


if __name__ == "__main__":
    main()
