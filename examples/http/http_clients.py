#!/usr/bin/env python3
"""rerankd's HTTP API through the clients people already have, as a check.

Owns: driving the official Cohere Python SDK (`cohere.Client` v1 rerank and
`cohere.ClientV2` v2 rerank, `base_url` at rerankd) and `requests` (Jina's
and TEI's shapes, and every error status) against live servers, and
checking what they read. Must never: start a server (tests/it/http.rs does),
or pass without checking what came back.

Arguments (tests/it/http.rs gives them):
  --addr HOST:PORT      a serving rerankd's HTTP port (default limits)
  --limits HOST:PORT    one with --max-documents 8, --max-inflight-bytes 64 KiB,
                        a 2 s request timeout and --served-model-name tiny
  --loading HOST:PORT   one whose model never finishes loading
  --expected FILE       JSON {query, documents, scores, raw_scores}: gRPC
                        Rerank's scores by document index for that input

Exits 0 when every check passes; 1 naming the first that failed.
"""

import argparse
import json
import socket
import sys
import time

import cohere
import requests

TOLERANCE = 1e-6


def check(condition, what):
    if not condition:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def close_to(results, expected, field, what):
    """Every result's score is gRPC's for its index, and best first."""
    for result in results:
        index, score = result["index"], result[field]
        check(abs(score - expected[index]) <= TOLERANCE,
              f"{what}: document {index} scores {score}, gRPC {expected[index]}")
    order = [r["index"] for r in results]
    best_first = sorted(range(len(expected)), key=lambda i: (-expected[i], i))
    check(order == best_first[:len(order)], f"{what}: ranked as gRPC ranks ({order})")


def cohere_sdk(base, case):
    query, documents, scores = case["query"], case["documents"], case["scores"]
    v1 = cohere.Client(api_key="unused", base_url=base)
    response = v1.rerank(query=query, documents=documents, top_n=2, return_documents=True)
    results = [{"index": r.index, "relevance_score": r.relevance_score} for r in response.results]
    check(len(results) == 2, "cohere v1: top_n=2 gives 2 results")
    close_to(results, scores, "relevance_score", "cohere v1")
    check(all(r.document.text == documents[r.index] for r in response.results),
          "cohere v1: return_documents gives each document's text")
    check(response.meta.api_version.version == "1", "cohere v1: meta.api_version")
    check(bool(response.id), "cohere v1: an id")
    bare = v1.rerank(query=query, documents=documents)
    check(all(r.document is None for r in bare.results), "cohere v1: no documents unless asked")
    check(len(bare.results) == len(documents), "cohere v1: every document without top_n")

    v2 = cohere.ClientV2(api_key="unused", base_url=base)
    response = v2.rerank(model="any-name", query=query, documents=documents, top_n=3)
    results = [{"index": r.index, "relevance_score": r.relevance_score} for r in response.results]
    check(len(results) == 3, "cohere v2: top_n=3 gives 3 results")
    close_to(results, scores, "relevance_score", "cohere v2")
    cut = v2.rerank(model="any-name", query=query, documents=documents, max_tokens_per_doc=1)
    check(len(cut.results) == len(documents) and cut.meta.tokens.input_tokens
          < response.meta.tokens.input_tokens,
          "cohere v2: max_tokens_per_doc=1 scores fewer tokens")
    try:
        v2.rerank(model="any-name", query="", documents=documents)
        check(False, "cohere v2: an empty query is refused")
    except cohere.errors.BadRequestError as error:
        check("query is empty" in error.body["message"], "cohere v2: an empty query is a 400")


def jina_and_tei(base, case):
    query, documents = case["query"], case["documents"]
    jina = requests.post(f"{base}/v1/rerank", timeout=30, json={
        "model": "jina-reranker-v2-base-multilingual", "query": query,
        "documents": [{"text": d} for d in documents], "top_n": 2, "return_documents": True})
    check(jina.status_code == 200, f"jina: 200 ({jina.status_code} {jina.text})")
    body = jina.json()
    close_to(body["results"], case["scores"], "relevance_score", "jina")
    check(body["usage"]["total_tokens"] > 0 and body["model"], "jina: usage.total_tokens and model")
    check(all(r["document"]["text"] == documents[r["index"]] for r in body["results"]),
          "jina: documents returned")

    tei = requests.post(f"{base}/rerank", json={"query": query, "texts": documents}, timeout=30)
    check(tei.status_code == 200, f"tei: 200 ({tei.status_code} {tei.text})")
    ranks = tei.json()
    check(isinstance(ranks, list) and all(set(r) == {"index", "score"} for r in ranks),
          "tei: a bare array of {index, score}")
    close_to(ranks, case["scores"], "score", "tei")
    raw = requests.post(f"{base}/rerank", timeout=30, json={
        "query": query, "texts": documents, "raw_scores": True, "return_text": True}).json()
    close_to(raw, case["raw_scores"], "score", "tei raw_scores")
    check(all(r["text"] == documents[r["index"]] for r in raw), "tei: return_text")


def error_status(response, status, fragment, what):
    check(response.status_code == status,
          f"{what}: {status} (got {response.status_code} {response.text})")
    body = response.json()
    message = body.get("message", body.get("error", ""))
    check(fragment in message, f"{what}: the message says {fragment!r} ({message!r})")
    return response


def hold_body(addr, length):
    """Sends a request's headers declaring `length` bytes, and no body."""
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall((f"POST /v1/rerank HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {length}\r\n\r\n").encode())
    return sock


def read_status(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n")[0].decode()
    status = int(head.split(" ")[1])
    headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip()
               for line in head.split("\r\n")[1:]}
    return status, headers


def inflight(base):
    for line in requests.get(f"{base}/metrics", timeout=30).text.splitlines():
        if line.startswith("rerankd_inflight_bytes "):
            return float(line.split()[1])
    return 0.0


def errors(base, limits, loading, case):
    query, documents = case["query"], case["documents"]
    error_status(requests.post(f"{base}/v1/rerank", json={"query": query, "documents": documents,
                                                           "top_n": "two"}, timeout=30),
                 400, "`top_n`", "400 wrong type")
    error_status(requests.post(f"{base}/v1/rerank", json={"documents": documents}, timeout=30),
                 400, "missing field `query`", "400 missing field")
    error_status(requests.post(f"{base}/rerank", json={"query": query, "texts": []}, timeout=30),
                 400, "`texts` cannot be empty", "400 in TEI's shape")
    error_status(requests.post(f"{limits}/v2/rerank", json={"model": "other", "query": query,
                                                            "documents": documents}, timeout=30),
                 404, 'model "other" is not served here', "404 unknown model")
    error_status(requests.post(f"{limits}/v1/rerank", json={"query": query,
                                                            "documents": ["a"] * 9}, timeout=30),
                 413, "--max-documents", "413 over the document limit")
    # 429: one request holds 40,000 bytes of the 64 KiB budget (its body is
    # charged at its Content-Length and never sent); a second of 20,000 is
    # past the 7/8 that large requests may fill.
    held = hold_body(limits.removeprefix("http://"), 40000)
    polls = 0
    while inflight(limits) < 40000:
        polls += 1
        check(polls < 10000, "the held body is charged on the in-flight budget")
    second = hold_body(limits.removeprefix("http://"), 20000)
    status, headers = read_status(second)
    check(status == 429 and headers.get("retry-after") == "1",
          f"429 with Retry-After: 1 past the in-flight budget (got {status} {headers})")
    second.close()
    # 504: the held request's 2 s timeout covers its body's upload.
    started = time.monotonic()
    status, _ = read_status(held)
    check(status == 504, f"504 when the request timeout passes (got {status})")
    print(f"figure: the held request was answered 504 after {time.monotonic() - started:.2f} s")
    held.close()
    error_status(requests.get(f"{loading}/health", timeout=30), 503, "still loading",
                 "503 health while loading")
    error_status(requests.post(f"{loading}/v1/rerank", json={"query": query,
                                                             "documents": documents}, timeout=30),
                 503, "still loading", "503 rerank while loading")
    error_status(requests.get(f"{base}/no/such/route", timeout=30), 404, "no route",
                 "404 unknown route")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--addr", "--limits", "--loading", "--expected"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args()
    with open(args.expected, encoding="utf-8") as file:
        case = json.load(file)
    base, limits, loading = (f"http://{a}" for a in (args.addr, args.limits, args.loading))
    cohere_sdk(base, case)
    jina_and_tei(base, case)
    errors(base, limits, loading, case)
    print("python http clients: every check passed")


if __name__ == "__main__":
    main()
