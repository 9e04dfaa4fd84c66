#!/usr/bin/env node
// Example rerankd client in Node.js (@grpc/grpc-js), doubling as a smoke test.
//
// Against a running server it:
//   1. calls ModelInfo and prints the model;
//   2. reranks one query over 3 documents with a unary Rerank and prints the
//      ranking;
//   3. sends 3 requests on one RerankStream, the second deliberately invalid
//      (empty query), and checks that every request_id is answered exactly
//      once, that the invalid one gets an `error` with code 3
//      (INVALID_ARGUMENT), and that the others get one result per document,
//      sorted by score, best first.
//
// The service is loaded at run time from ../../proto/rerank/v1/rerank.proto
// with @grpc/proto-loader: no generated code. Every call has a deadline. It
// exits 0 when every check passes, and 1 with a message naming what failed
// otherwise (server unreachable included).
//
// Usage: node rerank_client.js --addr 127.0.0.1:50051 [--timeout 10]
'use strict';

const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.join(__dirname, '..', '..', 'proto');
const QUERY = 'How do I keep my cast iron pan from rusting?';
const DOCUMENTS = [
  'Dry the pan right after washing and rub a thin layer of oil into it.',
  "The Eiffel Tower was finished in 1889 for the World's Fair.",
  'Seasoning builds a polymerised oil coating that protects iron from water.',
];
const INVALID_ARGUMENT = grpc.status.INVALID_ARGUMENT; // 3

/** A response did not match what the API promises. */
class CheckFailed extends Error {}

function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

function deadline(timeoutS) {
  return { deadline: Date.now() + timeoutS * 1000 };
}

/** One result per document, each document once, best score first. */
function checkRanking(response, documents, what) {
  const { results } = response;
  check(
    results.length === documents.length,
    `${what}: ${results.length} results for ${documents.length} documents`,
  );
  const indices = results.map((r) => r.index);
  const sorted = [...indices].sort((a, b) => a - b);
  check(
    sorted.every((index, i) => index === i),
    `${what}: result indices [${indices}] are not each document once`,
  );
  const scores = results.map((r) => r.score);
  check(
    scores.every((score, i) => i === 0 || scores[i - 1] >= score),
    `${what}: scores [${scores}] are not sorted best first`,
  );
}

/** A unary call as a promise. */
function unary(client, method, request, timeoutS) {
  return new Promise((resolve, reject) => {
    client[method](request, deadline(timeoutS), (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

async function modelInfo(client, timeoutS) {
  const info = await unary(client, 'ModelInfo', {}, timeoutS);
  console.log(
    `ModelInfo: name=${info.name} architecture=${info.architecture} ` +
      `mode=${info.mode} max_length=${info.max_length} ` +
      `device=${info.device} dtype=${info.dtype}`,
  );
  check(info.name !== '', 'ModelInfo: empty model name');
}

async function unaryRerank(client, timeoutS) {
  const request = {
    query: QUERY,
    documents: DOCUMENTS,
    return_documents: true,
    request_id: 'unary-1',
  };
  const response = await unary(client, 'Rerank', request, timeoutS);
  console.log(`Rerank: query=${JSON.stringify(QUERY)} (model ${response.model})`);
  response.results.forEach((r, i) =>
    console.log(`  ${i + 1}. [${r.index}] ${r.score.toFixed(4)}  ${r.document}`),
  );
  checkRanking(response, DOCUMENTS, 'Rerank');
  check(
    response.request_id === 'unary-1',
    `Rerank: request_id echoed as '${response.request_id}', expected 'unary-1'`,
  );
}

async function rerankStream(client, timeoutS) {
  const requests = new Map([
    ['stream-ok-1', { request_id: 'stream-ok-1', query: QUERY, documents: DOCUMENTS }],
    // Invalid on purpose: the query must not be empty.
    ['stream-bad-2', { request_id: 'stream-bad-2', query: '', documents: DOCUMENTS }],
    [
      'stream-ok-3',
      {
        request_id: 'stream-ok-3',
        query: "Which monument was built for a World's Fair?",
        documents: DOCUMENTS.slice(0, 2),
      },
    ],
  ]);

  // Collect every answer until the server ends the stream. Sending all
  // requests then closing our side is fine: the server answers every request
  // already sent, then ends the stream.
  const answers = await new Promise((resolve, reject) => {
    const received = [];
    const call = client.RerankStream(deadline(timeoutS));
    call.on('data', (answer) => received.push(answer));
    call.on('error', reject);
    call.on('end', () => resolve(received));
    for (const request of requests.values()) call.write(request);
    call.end();
  });

  const seen = new Map();
  for (const answer of answers) {
    const rid = answer.request_id;
    check(requests.has(rid), `RerankStream: answer for unknown request_id '${rid}'`);
    check(!seen.has(rid), `RerankStream: request_id '${rid}' answered twice`);
    seen.set(rid, answer);
    if (answer.outcome === 'error') {
      console.log(
        `RerankStream: ${rid} -> error code=${answer.error.code} ${answer.error.message}`,
      );
    } else {
      const ranking = answer.response.results
        .map((r) => `[${r.index}] ${r.score.toFixed(4)}`)
        .join(', ');
      console.log(`RerankStream: ${rid} -> ${answer.outcome}: ${ranking}`);
    }
  }

  const missing = [...requests.keys()].filter((rid) => !seen.has(rid));
  check(missing.length === 0, `RerankStream: no answer for [${missing}]`);
  for (const [rid, answer] of seen) {
    if (rid === 'stream-bad-2') {
      check(
        answer.outcome === 'error',
        `RerankStream: ${rid} (empty query) got '${answer.outcome}', expected an error`,
      );
      check(
        answer.error.code === INVALID_ARGUMENT,
        `RerankStream: ${rid} got error code ${answer.error.code}, ` +
          `expected ${INVALID_ARGUMENT} (INVALID_ARGUMENT)`,
      );
    } else {
      check(
        answer.outcome === 'response',
        `RerankStream: ${rid} got '${answer.outcome}', expected a response` +
          (answer.outcome === 'error' ? ` (${answer.error.message})` : ''),
      );
      checkRanking(answer.response, requests.get(rid).documents, `RerankStream ${rid}`);
    }
  }
}

function waitForReady(client, timeoutS) {
  return new Promise((resolve, reject) =>
    client.waitForReady(Date.now() + timeoutS * 1000, (error) =>
      error ? reject(error) : resolve(),
    ),
  );
}

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exitCode = 1;
}

async function main() {
  const usage = 'usage: node rerank_client.js --addr host:port [--timeout seconds]';
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        addr: { type: 'string' },
        timeout: { type: 'string', default: '10' },
      },
    }));
  } catch (error) {
    console.error(`${error.message}\n${usage}`);
    process.exit(2);
  }
  const timeoutS = Number(values.timeout);
  if (!values.addr || !(timeoutS > 0)) {
    console.error(usage);
    process.exit(2);
  }

  // keepCase: fields as spelled in the proto (request_id); oneofs: a virtual
  // `outcome` field naming which member of the oneof is set.
  const definition = protoLoader.loadSync('rerank/v1/rerank.proto', {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const { Reranker } = grpc.loadPackageDefinition(definition).rerank.v1;
  const client = new Reranker(values.addr, grpc.credentials.createInsecure());

  let step = 'connect';
  try {
    await waitForReady(client, timeoutS);
    step = 'ModelInfo';
    await modelInfo(client, timeoutS);
    step = 'Rerank';
    await unaryRerank(client, timeoutS);
    step = 'RerankStream';
    await rerankStream(client, timeoutS);
    console.log('node client: all checks passed');
  } catch (error) {
    if (error instanceof CheckFailed) {
      fail(error.message);
    } else if (step === 'connect') {
      fail(`cannot connect to ${values.addr} within ${timeoutS}s (${error.message})`);
    } else if (error.code !== undefined) {
      fail(`${step} call failed: ${grpc.status[error.code]}: ${error.details}`);
    } else {
      throw error;
    }
  } finally {
    client.close();
  }
}

main().catch((error) => {
  console.error(`FAIL: ${error.stack || error}`);
  process.exit(1);
});
