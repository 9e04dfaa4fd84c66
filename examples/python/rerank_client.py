#!/usr/bin/env python3
"""Example rerankd client in Python (grpcio), doubling as a smoke test.

Against a running server it:
  1. calls ModelInfo and prints the model;
  2. reranks one query over 3 documents with a unary Rerank and prints the
     ranking;
  3. sends 3 requests on one RerankStream, the second deliberately invalid
     (empty query), and checks that every request_id is answered exactly
     once, that the invalid one gets an `error` with code 3
     (INVALID_ARGUMENT), and that the others get one result per document,
     sorted by score, best first.

Every call has a deadline. It exits 0 when every check passes, and 1 with a
message naming what failed otherwise (server unreachable included).

The stubs are generated from proto/rerank/v1/rerank.proto into ./generated
(git-ignored); scripts/ci/test-clients.sh does it, or by hand, from this folder:
  python -m grpc_tools.protoc -I ../../proto --python_out=generated \
      --grpc_python_out=generated rerank/v1/rerank.proto

Usage: python rerank_client.py --addr 127.0.0.1:50051 [--timeout 10]
"""

import argparse
import itertools
import os
import sys

import grpc

GENERATED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "generated")
sys.path.insert(0, GENERATED)
try:
    from rerank.v1 import rerank_pb2, rerank_pb2_grpc
except ImportError as error:
    sys.exit(
        f"FAIL: cannot import the generated stubs from {GENERATED} ({error}); "
        "run scripts/ci/test-clients.sh or the protoc command in this file's header"
    )

QUERY = "How do I keep my cast iron pan from rusting?"
DOCUMENTS = [
    "Dry the pan right after washing and rub a thin layer of oil into it.",
    "The Eiffel Tower was finished in 1889 for the World's Fair.",
    "Seasoning builds a polymerised oil coating that protects iron from water.",
]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]  # 3


class CheckFailed(Exception):
    """A response did not match what the API promises."""


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def check_ranking(response, documents, what):
    """One result per document, each document once, best score first."""
    results = response.results
    check(
        len(results) == len(documents),
        f"{what}: {len(results)} results for {len(documents)} documents",
    )
    check(
        sorted(r.index for r in results) == list(range(len(documents))),
        f"{what}: result indices {[r.index for r in results]} are not each document once",
    )
    scores = [r.score for r in results]
    check(
        all(a >= b for a, b in itertools.pairwise(scores)),
        f"{what}: scores {scores} are not sorted best first",
    )


def model_info(stub, timeout):
    info = stub.ModelInfo(rerank_pb2.ModelInfoRequest(), timeout=timeout)
    print(
        f"ModelInfo: name={info.name} architecture={info.architecture} "
        f"mode={info.mode} max_length={info.max_length} "
        f"device={info.device} dtype={info.dtype}"
    )
    check(info.name != "", "ModelInfo: empty model name")


def unary_rerank(stub, timeout):
    request = rerank_pb2.RerankRequest(
        query=QUERY, documents=DOCUMENTS, return_documents=True, request_id="unary-1"
    )
    response = stub.Rerank(request, timeout=timeout)
    print(f"Rerank: query={QUERY!r} (model {response.model})")
    for rank, result in enumerate(response.results, start=1):
        print(f"  {rank}. [{result.index}] {result.score:.4f}  {result.document}")
    check_ranking(response, DOCUMENTS, "Rerank")
    check(
        response.request_id == "unary-1",
        f"Rerank: request_id echoed as {response.request_id!r}, expected 'unary-1'",
    )


def rerank_stream(stub, timeout):
    requests = {
        "stream-ok-1": rerank_pb2.RerankRequest(
            request_id="stream-ok-1", query=QUERY, documents=DOCUMENTS
        ),
        # Invalid on purpose: the query must not be empty.
        "stream-bad-2": rerank_pb2.RerankRequest(
            request_id="stream-bad-2", query="", documents=DOCUMENTS
        ),
        "stream-ok-3": rerank_pb2.RerankRequest(
            request_id="stream-ok-3",
            query="Which monument was built for a World's Fair?",
            documents=DOCUMENTS[:2],
        ),
    }
    # Sending all requests then closing our side is fine: the server answers
    # every request already sent, then ends the stream.
    answers = {}
    for answer in stub.RerankStream(iter(requests.values()), timeout=timeout):
        rid = answer.request_id
        check(rid in requests, f"RerankStream: answer for unknown request_id {rid!r}")
        check(rid not in answers, f"RerankStream: request_id {rid!r} answered twice")
        answers[rid] = answer
        outcome = answer.WhichOneof("outcome")
        if outcome == "error":
            print(f"RerankStream: {rid} -> error code={answer.error.code} {answer.error.message}")
        else:
            ranking = ", ".join(f"[{r.index}] {r.score:.4f}" for r in answer.response.results)
            print(f"RerankStream: {rid} -> {outcome}: {ranking}")

    missing = sorted(set(requests) - set(answers))
    check(not missing, f"RerankStream: no answer for {missing}")
    for rid, answer in answers.items():
        outcome = answer.WhichOneof("outcome")
        if rid == "stream-bad-2":
            check(
                outcome == "error",
                f"RerankStream: {rid} (empty query) got {outcome!r}, expected an error",
            )
            check(
                answer.error.code == INVALID_ARGUMENT,
                f"RerankStream: {rid} got error code {answer.error.code}, "
                f"expected {INVALID_ARGUMENT} (INVALID_ARGUMENT)",
            )
        else:
            check(
                outcome == "response",
                f"RerankStream: {rid} got {outcome!r}, expected a response"
                + (f" ({answer.error.message})" if outcome == "error" else ""),
            )
            check_ranking(answer.response, requests[rid].documents, f"RerankStream {rid}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True, help="server address, host:port")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="deadline of each call, seconds (default 10)"
    )
    args = parser.parse_args()

    with grpc.insecure_channel(args.addr) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.timeout)
        except grpc.FutureTimeoutError:
            sys.exit(f"FAIL: cannot connect to {args.addr} within {args.timeout:g}s")
        stub = rerank_pb2_grpc.RerankerStub(channel)
        step = "ModelInfo"
        try:
            model_info(stub, args.timeout)
            step = "Rerank"
            unary_rerank(stub, args.timeout)
            step = "RerankStream"
            rerank_stream(stub, args.timeout)
        except CheckFailed as failure:
            sys.exit(f"FAIL: {failure}")
        except grpc.RpcError as error:
            sys.exit(f"FAIL: {step} call failed: {error.code().name}: {error.details()}")
    print("python client: all checks passed")


if __name__ == "__main__":
    main()
