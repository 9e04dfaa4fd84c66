"""A TEI gRPC client, as a TEI user writes one, against a running rerankd.

It imports stubs that grpcio-tools compiled from TEI's own tei.proto (the copy vendored unchanged in
crates/rerankd-api/proto/tei; scripts/ci/test-tei-client.sh compiles it), calls tei.v1.Rerank
(Rerank and RerankStream), tei.v1.Info, an error case or two, grpc.health.v1 for each TEI service and
reflection, checks what TEI's API promises about the shape of each answer, and prints what it got
as one JSON object on stdout. tests/it/tei.rs compares the scores with rerankd's own Rerank.

Owns: speaking TEI's API through the generated stubs only, and the shape checks. Must never: know
rerankd's own API, or judge scores (the Rust test does, against rerank.v1).

Usage: tei_client.py --addr HOST:PORT --stubs DIR --cases CASES.json [--timeout SECONDS]
CASES.json: {"query": str, "texts": [str], "stream": [[query, text]], "long_text": str}
"""

import argparse
import json
import sys


def ranks(response, with_text):
    """TEI's ranks as [index, score, text or None], checking they come best first and carry a text
    exactly when it was asked for."""
    out = []
    for rank in response.ranks:
        assert rank.HasField("text") == with_text, rank
        out.append([rank.index, rank.score, rank.text if with_text else None])
    scores = [score for _, score, _ in out]
    assert scores == sorted(scores, reverse=True), scores
    assert response.HasField("metadata"), response
    assert response.metadata.compute_tokens > 0, response.metadata
    return out


def code_of(call):
    """The status code name a call ends with ("OK" when it succeeds)."""
    import grpc

    try:
        call()
    except grpc.RpcError as error:
        return error.code().name
    return "OK"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True)
    parser.add_argument("--stubs", required=True, help="folder with tei_pb2.py and tei_pb2_grpc.py")
    parser.add_argument("--cases", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    sys.path.insert(0, args.stubs)

    import tei_pb2
    import tei_pb2_grpc
    from google.protobuf.descriptor_pool import DescriptorPool
    from google.protobuf.json_format import MessageToDict
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    import grpc

    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)
    timeout = args.timeout
    got = {}
    with grpc.insecure_channel(args.addr) as channel:
        rerank = tei_pb2_grpc.RerankStub(channel)

        # Unary: raw scores with the texts, then TEI's defaults (normalised, no text).
        raw = rerank.Rerank(
            tei_pb2.RerankRequest(query=cases["query"], texts=cases["texts"], raw_scores=True, return_text=True),
            timeout=timeout,
        )
        got["unary_raw"] = ranks(raw, with_text=True)
        for index, _, text in got["unary_raw"]:
            assert text == cases["texts"][index], (index, text)
        plain = rerank.Rerank(tei_pb2.RerankRequest(query=cases["query"], texts=cases["texts"]), timeout=timeout)
        got["unary_normalised"] = ranks(plain, with_text=False)
        assert sorted(i for i, _, _ in got["unary_normalised"]) == list(range(len(cases["texts"])))

        # RerankStream: one answer once the stream ends; raw_scores and return_text are taken from
        # the first message only, so the later messages' other values must not matter.
        def stream(first_raw, first_text):
            for n, (query, text) in enumerate(cases["stream"]):
                later = n > 0
                yield tei_pb2.RerankStreamRequest(
                    query=query,
                    text=text,
                    raw_scores=(not first_raw) if later else first_raw,
                    return_text=(not first_text) if later else first_text,
                )

        got["stream_raw"] = ranks(rerank.RerankStream(stream(True, True), timeout=timeout), with_text=True)
        for index, _, text in got["stream_raw"]:
            assert text == cases["stream"][index][1], (index, text)
        got["stream_normalised"] = ranks(rerank.RerankStream(stream(False, False), timeout=timeout), with_text=False)

        info = tei_pb2_grpc.InfoStub(channel).Info(tei_pb2.InfoRequest(), timeout=timeout)
        assert info.model_type == tei_pb2.MODEL_TYPE_RERANKER, info
        got["info"] = MessageToDict(info, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)

        long_text = cases["long_text"]
        got["errors"] = {
            "empty_texts": code_of(
                lambda: rerank.Rerank(tei_pb2.RerankRequest(query=cases["query"], texts=[]), timeout=timeout)
            ),
            # TEI's default: truncate = false, so a pair over the window is refused.
            "too_long": code_of(
                lambda: rerank.Rerank(tei_pb2.RerankRequest(query=cases["query"], texts=[long_text]), timeout=timeout)
            ),
            "too_long_truncated": code_of(
                lambda: rerank.Rerank(
                    tei_pb2.RerankRequest(query=cases["query"], texts=[long_text], truncate=True), timeout=timeout
                )
            ),
            "too_long_in_stream": code_of(
                lambda: rerank.RerankStream(
                    iter([tei_pb2.RerankStreamRequest(query=cases["query"], text=long_text)]), timeout=timeout
                )
            ),
            "embed": code_of(
                lambda: tei_pb2_grpc.EmbedStub(channel).Embed(tei_pb2.EmbedRequest(inputs="x"), timeout=timeout)
            ),
        }

        health = health_pb2_grpc.HealthStub(channel)
        got["health"] = {
            service: health_pb2.HealthCheckResponse.ServingStatus.Name(
                health.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status
            )
            for service in ["tei.v1.Rerank", "tei.v1.Info"]
        }

        database = ProtoReflectionDescriptorDatabase(channel)
        got["reflection_services"] = sorted(database.get_services())
        pool = DescriptorPool(database)
        got["reflection_rerank_methods"] = sorted(m.name for m in pool.FindServiceByName("tei.v1.Rerank").methods)

    print(json.dumps(got))


if __name__ == "__main__":
    main()
