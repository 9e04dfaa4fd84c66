#!/usr/bin/env python3
"""Checks a running rerankd's API keys with real clients (scripts/ci/test-auth-clients.sh runs it).

On the gRPC port (grpcio, stubs generated from proto/rerank/v1/rerank.proto into --stubs):
  1. Rerank with `authorization: Bearer <key>` answers, one result per document;
  2. Rerank with a wrong key, and with none, fails UNAUTHENTICATED with a message that names the
     `authorization` header and does not repeat the wrong key;
  3. grpc.health.v1 Check answers SERVING without a key.
With --http, on the HTTP port, through the official Cohere Python SDK (base_url at rerankd):
  4. a client with a wrong key gets the SDK's unauthorized error (HTTP 401) on v1 and v2 rerank;
  5. a client with the key reranks, v1 and v2, one result per document.

The key comes from RERANKD_TEST_API_KEY and is never printed. Exits 0 when every check passes, 1
naming what failed otherwise.

Usage: RERANKD_TEST_API_KEY=KEY python check_keys.py --grpc HOST:PORT --stubs DIR [--http URL]
"""

import argparse
import os
import sys

import grpc

QUERY = "How do I keep my cast iron pan from rusting?"
DOCUMENTS = [
    "Dry the pan right after washing and rub a thin layer of oil into it.",
    "The Eiffel Tower was finished in 1889 for the World's Fair.",
    "Seasoning builds a polymerised oil coating that protects iron from water.",
]
WRONG_KEY = "not-the-key-4b1f0e"

failures = []


def check(name, passed, detail=""):
    """Records and prints one check's outcome."""
    print(f"{'PASS' if passed else 'FAIL'}: {name}{'' if passed else f' ({detail})'}", flush=True)
    if not passed:
        failures.append(name)


def check_grpc(addr, stubs, key, timeout):
    sys.path.insert(0, stubs)
    from rerank.v1 import rerank_pb2, rerank_pb2_grpc

    with grpc.insecure_channel(addr) as channel:
        stub = rerank_pb2_grpc.RerankerStub(channel)
        request = rerank_pb2.RerankRequest(query=QUERY, documents=DOCUMENTS)
        try:
            response = stub.Rerank(request, metadata=[("authorization", f"Bearer {key}")], timeout=timeout)
            check("grpc: Rerank with the key", len(response.results) == len(DOCUMENTS), f"{response}")
        except grpc.RpcError as error:
            check("grpc: Rerank with the key", False, f"{error.code()}: {error.details()}")

        for label, metadata in [
            ("a wrong key", [("authorization", f"Bearer {WRONG_KEY}")]),
            ("no key", []),
        ]:
            name = f"grpc: Rerank with {label} is UNAUTHENTICATED"
            try:
                stub.Rerank(request, metadata=metadata, timeout=timeout)
                check(name, False, "it was answered")
            except grpc.RpcError as error:
                details = error.details() or ""
                check(
                    name,
                    error.code() == grpc.StatusCode.UNAUTHENTICATED
                    and "authorization" in details
                    and WRONG_KEY not in details,
                    f"{error.code()}: {details}",
                )

        # grpc.health.v1 by hand (no extra package): an empty HealthCheckRequest asks about the
        # whole server; the answer's field 1 is the status, SERVING = 1.
        check_health = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda _: b"",
            response_deserializer=lambda data: data,
        )
        try:
            answer = check_health(None, timeout=timeout)
            check("grpc: health answers without a key", answer == b"\x08\x01", f"{answer!r}")
        except grpc.RpcError as error:
            check("grpc: health answers without a key", False, f"{error.code()}: {error.details()}")


def check_cohere(url, key, timeout):
    import cohere

    clients = {
        "v1": lambda api_key: cohere.Client(api_key=api_key, base_url=url, timeout=timeout),
        "v2": lambda api_key: cohere.ClientV2(api_key=api_key, base_url=url, timeout=timeout),
    }
    for version, client in clients.items():
        name = f"cohere {version}: a wrong key gets UnauthorizedError (401)"
        try:
            client(WRONG_KEY).rerank(model="rerankd", query=QUERY, documents=DOCUMENTS)
            check(name, False, "it was answered")
        except cohere.errors.UnauthorizedError as error:
            body = str(error.body)
            check(
                name,
                error.status_code == 401 and "authorization" in body and WRONG_KEY not in body,
                f"{error.status_code}: {body}",
            )
        except Exception as error:  # any other error is this check's failure
            check(name, False, f"{type(error).__name__}: {error}")

        name = f"cohere {version}: the key reranks"
        try:
            response = client(key).rerank(model="rerankd", query=QUERY, documents=DOCUMENTS)
            indices = sorted(result.index for result in response.results)
            check(name, indices == list(range(len(DOCUMENTS))), f"{response}")
        except Exception as error:  # any error is this check's failure
            check(name, False, f"{type(error).__name__}: {error}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc", required=True, help="HOST:PORT of rerankd's gRPC port")
    parser.add_argument("--stubs", required=True, help="folder of the generated rerank/v1 stubs")
    parser.add_argument("--http", help="base URL of rerankd's HTTP port, e.g. http://127.0.0.1:8080")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-call deadline, seconds")
    args = parser.parse_args()
    key = os.environ.get("RERANKD_TEST_API_KEY")
    if not key:
        sys.exit("FAIL: RERANKD_TEST_API_KEY is not set")

    check_grpc(args.grpc, args.stubs, key, args.timeout)
    if args.http:
        check_cohere(args.http, key, args.timeout)
    if failures:
        print(f"FAILED: {len(failures)} check(s): {', '.join(failures)}", flush=True)
        return 1
    print("auth clients: every check passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
