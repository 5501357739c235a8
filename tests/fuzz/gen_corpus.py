#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets to tests/fuzz/corpus/<target>/ (committed; rerun
after a change here): frame (frame_fuzz.c), server (server_fuzz.c) and client (client_fuzz.c),
whose input encodings are described at the top of their files. Frames are encoded here from
rpc/WIRE.md alone, independently of the C codec, so the seeds also check that the page is enough
to implement the protocol."""
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

def md_block(*pairs):
    """A metadata block (WIRE.md section 13): u32 length, then u8 key len, u16 value len, key, value."""
    entries = b"".join(bytes([len(k)]) + struct.pack("<H", len(v)) + k + v for k, v in pairs)
    return struct.pack("<I", len(entries)) + entries


# WIRE.md section 13's worked example: headers, then the message.
MD_REQ = frame(REQUEST, 9, md_block((b"authorization", b"Bearer t0k3n"), (b"tenant", b"acme")) + HELLO,
               method="demo.Echo/Say", flags=1)

SEEDS = {
    "request": REQ,
    "request_metadata": MD_REQ,
    "response_trailers": frame(RESPONSE, 9, md_block((b"retry-after", b"3")) + b"try later",
                               status=14, flags=1),
    "metadata_bad_key": frame(REQUEST, 9, md_block((b"Upper", b"x")) + HELLO, method="demo.Echo/Say", flags=1),
    "metadata_block_past_body": frame(REQUEST, 9, struct.pack("<I", 99) + b"\x01\x00\x00a", method="demo.Echo/Say", flags=1),
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


# ---- Protobuf, by hand (tests/rpc_test.proto, rpc/health.proto) ----------------------------

def varint(v):
    v &= (1 << 64) - 1  # negative int32/int64: ten bytes
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, v):
    return varint(num << 3) + varint(v) if v else b""


def echo_request(text="", delay_ms=0, code=0, payload=b""):
    """test.v1.EchoRequest: text = 1, delay_ms = 2, code = 3, payload = 4."""
    out = field_bytes(1, text.encode()) if text else b""
    out += field_varint(2, delay_ms) + field_varint(3, code)
    return out + (field_bytes(4, payload) if payload else b"")


def echo_reply(text=""):
    """test.v1.EchoReply: text = 1."""
    return field_bytes(1, text.encode()) if text else b""


def health_request(service=""):
    """gaio.health.v1.HealthCheckRequest: service = 1."""
    return field_bytes(1, service.encode()) if service else b""


# ---- Server seeds: a mode byte, then the bytes sent (server_fuzz.c) ---------------------------

HALF_CLOSE, CLOSE_AT_ONCE, READ_ONE, NO_HALF_CLOSE = 0, 1, 2, 3


def chunked(mode, k):
    """The mode byte with chunking k (sends of CHUNK[k] bytes at first)."""
    return mode | k << 2


SAY = "test.v1.Echo/Say"


def echo(method, request_id, timeout_us=0, **kw):
    return frame(REQUEST, request_id, echo_request(**kw), method="test.v1.Echo/" + method,
                 timeout_us=timeout_us)


def check(request_id, service=""):
    return frame(REQUEST, request_id, health_request(service), method="gaio.health.v1.Health/Check")


def server(mode, *frames):
    return bytes([mode]) + b"".join(frames)


# A Say whose request fits the server's max_body (4096) but whose reply does not: the reply adds
# remaining_us (-1, no deadline: 11 bytes).
BIG_SAY = echo("Say", 1, text="t" * 60, payload=b"p" * 4026)
assert len(BIG_SAY) - 24 <= 4096 < len(BIG_SAY) - 24 + 11

SERVER_SEEDS = {
    "say": server(HALF_CLOSE, echo("Say", 1, text="hello")),
    "say_with_headers": server(HALF_CLOSE, frame(
        REQUEST, 1, md_block((b"tenant", b"acme"), (b"traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"))
        + echo_request(text="hi"), method="test.v1.Echo/Say", flags=1)),
    "say_malformed_headers_then_say": server(HALF_CLOSE, frame(
        REQUEST, 1, struct.pack("<I", 50) + echo_request(text="x"), method="test.v1.Echo/Say", flags=1),
        echo("Say", 2, text="after")),
    "every_method": server(
        HALF_CLOSE, echo("Say", 1, text="a"), echo("Slow", 2, text="b", delay_ms=3),
        echo("Hold", 3, text="c"), echo("Fail", 4, text="nope", code=5), check(5),
        check(6, "test.v1.Echo"), check(7, "no.such.Service"),
        frame(REQUEST, 8, method="test.v1.Echo/Missing"), frame(PING, 9)),
    "ping": server(HALF_CLOSE, frame(PING, 0xDEADBEEF)),
    # 2880 bytes of PONGs: over the server's 2048 queued bytes, so it pauses its reading.
    "ping_flood": server(HALF_CLOSE, *[frame(PING, i) for i in range(120)]),
    "cancel_hold": server(HALF_CLOSE, echo("Hold", 1, text="x"), frame(CANCEL, 1), frame(PING, 2)),
    "cancel_unknown": server(HALF_CLOSE, frame(CANCEL, 77), echo("Say", 1)),
    "id_in_use": server(HALF_CLOSE, echo("Slow", 5, delay_ms=5), echo("Say", 5, text="again")),
    "deadline": server(HALF_CLOSE, echo("Hold", 1, timeout_us=1000), echo("Say", 2, timeout_us=1)),
    "garbage_body": server(HALF_CLOSE, frame(REQUEST, 1, b"\xff\xff\xff", method=SAY)),
    "empty_body": server(HALF_CLOSE, frame(REQUEST, 1, method=SAY)),
    "say_no_reply": server(HALF_CLOSE, echo("Say", 1, code=1)),
    "fail_codes": server(HALF_CLOSE, echo("Fail", 1, code=99, text="big"),
                         echo("Fail", 2, code=0), echo("Fail", 3, code=-1, text="neg")),
    "reply_over_max_body": server(HALF_CLOSE, BIG_SAY),
    "oversize_then_ping": server(HALF_CLOSE, frame(REQUEST, 3, b"x" * 5000, method=SAY),
                                 frame(PING, 4)),
    "oversize_cut": server(HALF_CLOSE, frame(REQUEST, 3, method=SAY, body_len=5000)),
    "over_hard_cap": server(HALF_CLOSE, echo("Say", 2),
                            frame(REQUEST, 1, method=SAY, body_len=(64 << 20) + 1)),
    "bad_magic_after_call": server(HALF_CLOSE, echo("Say", 3), frame(PING, 1, magic=0x4752)),
    "response_from_client": server(HALF_CLOSE, echo("Hold", 4), frame(RESPONSE, 4), frame(PING, 5)),
    "goaway_from_client": server(HALF_CLOSE, frame(GOAWAY, 0, b"bye")),
    "pong_from_client": server(NO_HALF_CLOSE, echo("Slow", 9), frame(PONG, 1)),
    "ping_with_body": server(HALF_CLOSE, frame(PING, 1, b"!")),
    "ids_compare_plain": server(HALF_CLOSE, echo("Say", 0x90000000), echo("Say", 1),
                                frame(CANCEL, 1, flags=1)),
    "truncated_header": server(HALF_CLOSE, echo("Say", 1), echo("Say", 2)[:13]),
    "truncated_body": server(HALF_CLOSE, echo("Slow", 1), echo("Say", 2, text="cut")[:-2]),
    "calls_over_limit": server(HALF_CLOSE, *[echo("Hold", i) for i in range(1, 21)]),
    "close_at_once": server(CLOSE_AT_ONCE, echo("Slow", 1, delay_ms=2), echo("Hold", 2),
                            echo("Say", 3), frame(PING, 4)),
    "read_one": server(READ_ONE, frame(PING, 1), echo("Hold", 2), echo("Slow", 3)),
    "chunked_bytes": server(chunked(HALF_CLOSE, 1), echo("Say", 1, text="one"), frame(PING, 2),
                            echo("Slow", 3, delay_ms=1)),
    "chunked_headers": server(chunked(HALF_CLOSE, 5), echo("Say", 1), echo("Say", 2),
                              frame(REQUEST, 3, b"y" * 4200, method=SAY), frame(PING, 4)),
}

# ---- Client seeds: a set-up byte, then the script (client_fuzz.c) ------------------------------

FRAME_OP, RAW_OP, REPLY_OP, CANCEL_OP, WAIT_OP, FLUSH_OP = 0x00, 0x40, 0x80, 0xA0, 0xC0, 0xE0


def setup(calls, keep_open=False, abrupt=False):
    return bytes([(calls - 1) | (4 if keep_open else 0) | (8 if abrupt else 0)])


def call(i):
    """The id operand naming call i."""
    return i


def raw_id(v):
    """The id operand naming the plain id v (0..126)."""
    return 0x80 + v


def op_frame(ftype, status, ident, body=b"", announce=None):
    if announce is not None:
        return bytes([FRAME_OP | ftype, status, ident, 0xFF]) + struct.pack("<I", announce)
    return bytes([FRAME_OP | ftype, status, ident, len(body)]) + body


def op_raw(data):
    out = b""
    while data:
        out += bytes([RAW_OP | (len(data[:64]) - 1)]) + data[:64]
        data = data[64:]
    return out


def reply(i):
    return bytes([REPLY_OP | i])


def cancel(i):
    return bytes([CANCEL_OP | i])


def wait(i):
    return bytes([WAIT_OP | i])


FLUSH = bytes([FLUSH_OP])
RESP_HEADER = frame(RESPONSE, 1, echo_reply("split"))

CLIENT_SEEDS = {
    "replies": setup(2) + reply(1) + reply(0),
    "four_calls_mixed": setup(4) + reply(2) + op_frame(RESPONSE, 5, call(0), b"not found")
    + op_frame(RESPONSE, 16, call(3), b"who?") + reply(1),
    "error_text_with_nul": setup(1) + op_frame(RESPONSE, 3, call(0), b"bad\x00tail" + b"e" * 200),
    "reply_does_not_unpack": setup(1) + op_frame(RESPONSE, 0, call(0), b"\xff\xff"),
    "reply_over_max_body": setup(2) + op_frame(RESPONSE, 0, call(0), announce=2000)
    + op_raw(b"z" * 200) + reply(1),
    "goaway_then_reply": setup(3) + op_frame(GOAWAY, 0, call(0), b"restarting") + reply(0),
    "goaway_zero": setup(2) + op_frame(GOAWAY, 0, raw_id(0)),
    "goaway_twice": setup(3) + op_frame(GOAWAY, 0, call(1)) + op_frame(GOAWAY, 0, call(0))
    + reply(0),
    "goaway_over_max_body": setup(2) + op_frame(GOAWAY, 0, call(0), announce=1500)
    + op_raw(b"r" * 100) + reply(0),
    "response_never_sent_id": setup(1) + op_frame(RESPONSE, 0, raw_id(100)),
    "response_id_zero": setup(2) + reply(1) + op_frame(RESPONSE, 0, raw_id(0)),
    "cancel_then_late_reply": setup(2) + cancel(0) + reply(0) + reply(1),
    "cancel_after_reply": setup(1) + reply(0) + cancel(0),
    "abrupt_close_after_cancel": setup(2, abrupt=True) + cancel(0) + reply(1),
    "deadline_then_late_reply": setup(2, keep_open=True) + wait(0) + reply(0) + reply(1),
    "keep_open_silent": setup(1, keep_open=True),
    "keep_open_one_reply": setup(2, keep_open=True) + reply(1),
    "pong": setup(1) + op_frame(PONG, 0, raw_id(5)) + reply(0),
    "pong_with_body": setup(1) + op_frame(PONG, 0, raw_id(5), b"!") + reply(0),
    "request_from_server": setup(2) + op_frame(REQUEST, 0, call(0)),
    "ping_from_server": setup(1) + op_frame(PING, 0, raw_id(1)),
    "status_17": setup(1) + op_frame(RESPONSE, 17, call(0)),
    "type_0_and_7": setup(1) + op_frame(0, 0, call(0)) + op_frame(7, 0, call(0)),
    "garbage": setup(2) + op_raw(b"GR\x01\x02" + bytes(range(40))),
    "cut_header": setup(1) + op_raw(RESP_HEADER[:10]),
    "split_by_flush": setup(1) + op_raw(RESP_HEADER[:12]) + FLUSH + op_raw(RESP_HEADER[12:])
    + FLUSH + wait(0),
    "wait_on_answered": setup(2) + reply(0) + wait(0) + wait(1) + reply(1),
}


def write(name, seeds):
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", name)
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        os.remove(os.path.join(out, old))
    for seed, data in sorted(seeds.items()):
        with open(os.path.join(out, seed + ".bin"), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), out))


def main():
    write("frame", SEEDS)
    write("server", SERVER_SEEDS)
    write("client", CLIENT_SEEDS)


if __name__ == "__main__":
    main()
