#!/usr/bin/env python3
"""A minimal rerankd gRPC client for the device kit: hand-encoded protobuf over grpcio's generic calls.

The GPU machine has grpcio but neither generated stubs nor protoc/grpcio-tools, so the few messages the
kit needs (grpc.health.v1 Check, rerank.v1 ModelInfo, Stats and ScorePairs) are encoded and decoded
here by field number, from proto/rerank/v1/rerank.proto.

    rpc.py wait ADDR [--pid PID] [--timeout S]   wait for health SERVING (exit 1 if the server died or
                                                  the time ran out); prints {"serving_after_secs": ..}
    rpc.py info ADDR                              ModelInfo as JSON
    rpc.py stats ADDR                             Stats as JSON

Owns: the wire format of those four calls. Must never: import torch or anything beyond grpcio and the
standard library (it also runs on machines whose python has only grpcio), or guess at fields it does not
decode (unknown fields are skipped, as protobuf does).
"""
import argparse
import json
import os
import struct
import sys
import time

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
import grpc  # noqa: E402

MAX_MESSAGE = 64 << 20
SERVING = 1
HEALTH_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


# ---- protobuf wire format ------------------------------------------------------------------------


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field, wire_type):
    return _varint(field << 3 | wire_type)


def enc_str(field, text):
    data = text.encode("utf-8")
    return _key(field, 2) + _varint(len(data)) + data if data else b""


def enc_msg(field, body):
    return _key(field, 2) + _varint(len(body)) + body


def enc_bool(field, value):
    return _key(field, 0) + _varint(1) if value else b""


def enc_uint(field, value):
    return _key(field, 0) + _varint(value) if value else b""


def decode(buf):
    """Field number -> list of raw values (int for varints, bytes otherwise)."""
    fields = {}
    i, n = 0, len(buf)
    while i < n:
        key, i = _read_varint(buf, i)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, i = _read_varint(buf, i)
        elif wire_type == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire_type == 2:
            length, i = _read_varint(buf, i)
            value, i = buf[i:i + length], i + length
        elif wire_type == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire_type} (field {field})")
        fields.setdefault(field, []).append((wire_type, value))
    return fields


def _read_varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _last(fields, num, default=None):
    values = fields.get(num)
    return values[-1][1] if values else default


def _string(fields, num):
    return bytes(_last(fields, num, b"")).decode("utf-8")


def _double(fields, num):
    raw = _last(fields, num)
    return struct.unpack("<d", raw)[0] if raw is not None else 0.0


def _floats(fields, num):
    out = []
    for wire_type, value in fields.get(num, []):
        if wire_type == 2:  # packed
            out.extend(struct.unpack(f"<{len(value) // 4}f", value))
        else:
            out.append(struct.unpack("<f", value)[0])
    return out


# ---- calls ---------------------------------------------------------------------------------------

DEVICE_STATS_INTS = {
    2: "budget_tokens", 5: "free_bytes", 6: "total_bytes", 7: "ceiling_tokens", 8: "oom_count",
    9: "splits", 10: "batches", 11: "pairs", 12: "real_tokens", 13: "padded_tokens", 15: "busy_micros",
}


class Client:
    def __init__(self, addr, timeout=60.0):
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            addr,
            options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
        )

    def close(self):
        self.channel.close()

    def _call(self, method, request, timeout=None):
        call = self.channel.unary_unary(method)
        return call(request, timeout=timeout or self.timeout)

    def health(self, service="", timeout=None):
        fields = decode(self._call("/grpc.health.v1.Health/Check", enc_str(1, service), timeout))
        return int(_last(fields, 1, 0))

    def model_info(self):
        f = decode(self._call("/rerank.v1.Reranker/ModelInfo", b""))
        return {
            "name": _string(f, 1),
            "max_length": int(_last(f, 2, 0)),
            "device": _string(f, 3),
            "dtype": _string(f, 4),
            "mode": _string(f, 5),
            "activation": _string(f, 6),
            "architecture": _string(f, 7),
            "devices": [bytes(v).decode() for _w, v in f.get(8, [])],
        }

    def stats(self):
        f = decode(self._call("/rerank.v1.Reranker/Stats", b""))
        devices = []
        for _w, raw in f.get(1, []):
            d = decode(raw)
            item = {"device": _string(d, 1), "bytes_per_token": _double(d, 3),
                    "memory_known": bool(_last(d, 4, 0)), "padding_efficiency": _double(d, 14)}
            for num, name in DEVICE_STATS_INTS.items():
                item[name] = int(_last(d, num, 0))
            # Field 17 (bytes_per_token_measured) is newer than some binaries: None when absent, which
            # proto3 also sends for false, so only True is conclusive.
            item["bytes_per_token_measured"] = bool(_last(d, 17)) if 17 in d else None
            devices.append(item)
        return {"devices": devices, "queued_pairs": int(_last(f, 2, 0))}

    def score_pairs(self, pairs, normalize=False):
        """Raw (or normalised) scores of (query, document) pairs, in order."""
        body = b"".join(enc_msg(1, enc_str(1, q) + enc_str(2, d)) for q, d in pairs)
        body += enc_bool(2, normalize)
        f = decode(self._call("/rerank.v1.Reranker/ScorePairs", body))
        scores = _floats(f, 1)
        if len(scores) != len(pairs):
            raise RuntimeError(f"ScorePairs returned {len(scores)} scores for {len(pairs)} pairs")
        return scores


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_serving(addr, pid=None, timeout=300.0):
    """Seconds until health says SERVING; raises if the server died or `timeout` passed."""
    start = time.monotonic()
    client = Client(addr)
    last = "no answer yet"
    try:
        while True:
            waited = time.monotonic() - start
            if pid is not None and not _alive(pid):
                raise RuntimeError(f"the server (pid {pid}) exited before it was SERVING (last: {last})")
            if waited > timeout:
                raise RuntimeError(f"not SERVING after {timeout:.0f} s (last: {last})")
            try:
                status = client.health(timeout=2.0)
                last = HEALTH_NAMES.get(status, str(status))
                if status == SERVING:
                    return waited
            except grpc.RpcError as e:
                last = f"{e.code().name}: {e.details()}"
            # Not synchronisation: the server reports readiness only through health, so it is polled.
            time.sleep(0.25)
    finally:
        client.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("addr")
    w.add_argument("--pid", type=int)
    w.add_argument("--timeout", type=float, default=300.0)
    for name in ("info", "stats"):
        sub.add_parser(name).add_argument("addr")
    args = ap.parse_args(argv)
    if args.cmd == "wait":
        try:
            secs = wait_serving(args.addr, args.pid if args.pid and args.pid > 0 else None, args.timeout)
        except RuntimeError as e:
            print(f"rpc.py wait {args.addr}: {e}", file=sys.stderr)
            return 1
        print(json.dumps({"addr": args.addr, "serving_after_secs": round(secs, 2)}))
        return 0
    client = Client(args.addr)
    try:
        print(json.dumps(client.model_info() if args.cmd == "info" else client.stats(), indent=2))
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
