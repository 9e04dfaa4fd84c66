// rerankd's HTTP API through Node 20's built-in fetch: Jina's /v1/rerank and
// TEI's /rerank, checked against gRPC Rerank's scores.
//
// Owns: those two calls and their checks. Must never: start a server
// (tests/it/http.rs does), or pass without checking what came back.
//
// Usage: node fetch_client.mjs --addr HOST:PORT --expected FILE
//   FILE: JSON {query, documents, scores, raw_scores} (gRPC's, by index).
// Exits 0 when every check passes; 1 naming the first that failed.
import { readFileSync } from "node:fs";

const TOLERANCE = 1e-6;
const arg = (name) => process.argv[process.argv.indexOf(name) + 1];
const base = `http://${arg("--addr")}`;
const expected = JSON.parse(readFileSync(arg("--expected"), "utf8"));

function check(condition, what) {
  if (!condition) {
    console.error(`FAIL: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

function closeTo(results, scores, field, what) {
  for (const result of results) {
    const diff = Math.abs(result[field] - scores[result.index]);
    check(diff <= TOLERANCE, `${what}: document ${result.index} scores ${result[field]}, gRPC ${scores[result.index]}`);
  }
  const best = [...scores.keys()].sort((a, b) => scores[b] - scores[a] || a - b);
  const order = results.map((r) => r.index);
  check(JSON.stringify(order) === JSON.stringify(best.slice(0, order.length)), `${what}: ranked as gRPC ranks (${order})`);
}

async function post(path, body) {
  const response = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

const { query, documents } = expected;
const jina = await post("/v1/rerank", { model: "jina-reranker-v2", query, documents, top_n: 3, return_documents: true });
check(jina.status === 200, `jina: 200 (${jina.status})`);
closeTo(jina.json.results, expected.scores, "relevance_score", "jina");
check(jina.json.results.every((r) => r.document.text === documents[r.index]), "jina: documents returned");
check(jina.json.usage.total_tokens > 0, "jina: usage.total_tokens");

const tei = await post("/rerank", { query, texts: documents, truncate: true, truncation_direction: "Right" });
check(tei.status === 200 && Array.isArray(tei.json), `tei: 200 and a bare array (${tei.status})`);
check(tei.json.every((r) => r.text === undefined), "tei: no text unless asked");
closeTo(tei.json, expected.scores, "score", "tei");
const raw = await post("/rerank", { query, texts: documents, raw_scores: true });
closeTo(raw.json, expected.raw_scores, "score", "tei raw_scores");
const empty = await post("/rerank", { query, texts: [] });
check(empty.status === 400 && empty.json.error_type === "Validation", `tei: empty texts is 400 in TEI's error shape (${JSON.stringify(empty.json)})`);
console.log("node fetch client: every check passed");
