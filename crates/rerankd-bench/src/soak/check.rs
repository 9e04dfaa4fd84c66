//! Whether an OK answer is the answer its request asks for: the right
//! number of results, each document once, finite scores, best first, the
//! documents echoed when asked; a stream answering each request once, the
//! bad one with INVALID_ARGUMENT; a progressive call ending with its final.
//!
//! Owns: the soak's idea of a right answer. Must never: do I/O or compare
//! scores against expected values (the soak is about the server staying
//! up and consistent, the other tests pin the scores).

use rerankd_api::pb;

/// Why an answer is wrong, in a sentence.
pub type Wrong = String;

/// The results a Rerank of `documents` documents with `top_n` returns.
fn expected_results(documents: usize, top_n: u32) -> usize {
    if top_n == 0 {
        documents
    } else {
        documents.min(top_n as usize)
    }
}

pub fn rerank(request: &pb::RerankRequest, response: &pb::RerankResponse) -> Result<(), Wrong> {
    let documents = request.documents.len();
    let want = expected_results(documents, request.top_n);
    if response.results.len() != want {
        return Err(format!(
            "{} results for {documents} documents with top_n {} (want {want})",
            response.results.len(),
            request.top_n
        ));
    }
    results(&response.results, documents, true)?;
    for result in &response.results {
        let echoed = result.document.as_deref();
        let want = request
            .return_documents
            .then(|| request.documents[result.index as usize].as_str());
        if echoed != want {
            return Err(format!(
                "document {} echoed {:?}, want {:?}",
                result.index,
                echoed.map(|d| d.len()),
                want.map(|d| d.len())
            ));
        }
    }
    request_id(&request.request_id, &response.request_id)
}

/// Indices in range and each at most once, scores finite, and (when
/// `sorted`) best first.
fn results(results: &[pb::RerankResult], documents: usize, sorted: bool) -> Result<(), Wrong> {
    let mut seen = vec![false; documents];
    for (i, result) in results.iter().enumerate() {
        let index = result.index as usize;
        if index >= documents || std::mem::replace(&mut seen[index], true) {
            return Err(format!(
                "result {i}: index {index} repeated or out of {documents}"
            ));
        }
        if !result.score.is_finite() {
            return Err(format!("result {i}: score {}", result.score));
        }
        if sorted && i > 0 && results[i - 1].score < result.score {
            return Err(format!(
                "result {i} scores {} above the one before ({})",
                result.score,
                results[i - 1].score
            ));
        }
    }
    Ok(())
}

fn request_id(sent: &str, answered: &str) -> Result<(), Wrong> {
    if sent == answered {
        Ok(())
    } else {
        Err(format!("request id {answered:?} for {sent:?}"))
    }
}

pub fn pairs(
    request: &pb::ScorePairsRequest,
    response: &pb::ScorePairsResponse,
) -> Result<(), Wrong> {
    if response.scores.len() != request.pairs.len() {
        return Err(format!(
            "{} scores for {} pairs",
            response.scores.len(),
            request.pairs.len()
        ));
    }
    if let Some(i) = response.scores.iter().position(|s| !s.is_finite()) {
        return Err(format!("pair {i}: score {}", response.scores[i]));
    }
    request_id(&request.request_id, &response.request_id)
}

/// A progressive call's updates, in the order they came.
pub fn progressive(
    request: &pb::RerankRequest,
    updates: &[pb::rerank_progress::Update],
) -> Result<(), Wrong> {
    use pb::rerank_progress::Update;
    let documents = request.documents.len();
    let Some((Update::Final(last), partials)) = updates.split_last() else {
        return Err(format!(
            "the stream ended without a final answer ({} updates)",
            updates.len()
        ));
    };
    for (i, update) in partials.iter().enumerate() {
        let Update::Partial(partial) = update else {
            return Err(format!("update {i} is a second final"));
        };
        if partial.total as usize != documents || partial.scored > partial.total {
            return Err(format!(
                "partial {i}: scored {} of {} for {documents} documents",
                partial.scored, partial.total
            ));
        }
        results(&partial.results, documents, false)?;
    }
    rerank(request, last)
}

/// A stream's answers against its requests: each answered once, the one at
/// `bad` with INVALID_ARGUMENT, the others with a right answer.
pub fn stream(
    requests: &[pb::RerankRequest],
    bad: usize,
    answers: &[pb::RerankStreamResponse],
) -> Result<(), Wrong> {
    use pb::rerank_stream_response::Outcome;
    if answers.len() != requests.len() {
        return Err(format!(
            "{} answers to {} requests",
            answers.len(),
            requests.len()
        ));
    }
    let mut answered = vec![false; requests.len()];
    for answer in answers {
        let Some(i) = requests
            .iter()
            .position(|r| r.request_id == answer.request_id)
        else {
            return Err(format!("an answer to unknown id {:?}", answer.request_id));
        };
        if std::mem::replace(&mut answered[i], true) {
            return Err(format!("request {i} answered twice"));
        }
        match (&answer.outcome, i == bad) {
            (Some(Outcome::Error(error)), true)
                if error.code == tonic::Code::InvalidArgument as i32 => {}
            (Some(Outcome::Response(response)), false) => rerank(&requests[i], response)?,
            (outcome, bad) => {
                return Err(format!(
                    "request {i} (bad: {bad}) answered {}",
                    describe(outcome.as_ref())
                ))
            }
        }
    }
    Ok(())
}

fn describe(outcome: Option<&pb::rerank_stream_response::Outcome>) -> String {
    use pb::rerank_stream_response::Outcome;
    match outcome {
        None => "nothing".into(),
        Some(Outcome::Response(_)) => "a response".into(),
        Some(Outcome::Error(e)) => format!(
            "{}: {}",
            rerankd_api::code_name(tonic::Code::from_i32(e.code)),
            e.message
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(documents: usize, top_n: u32) -> pb::RerankRequest {
        pb::RerankRequest {
            query: "q".into(),
            documents: (0..documents).map(|i| format!("d{i}")).collect(),
            top_n,
            ..Default::default()
        }
    }

    fn response(ranked: &[(u32, f32)]) -> pb::RerankResponse {
        pb::RerankResponse {
            results: ranked
                .iter()
                .map(|&(index, score)| pb::RerankResult {
                    index,
                    score,
                    document: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_rerank_answer_is_checked_for_count_order_indices_and_echo() {
        let check = |req: &pb::RerankRequest, ranked: &[(u32, f32)]| rerank(req, &response(ranked));
        assert_eq!(
            check(&request(3, 0), &[(1, 0.9), (0, 0.5), (2, 0.1)]),
            Ok(())
        );
        assert_eq!(check(&request(3, 2), &[(1, 0.9), (0, 0.5)]), Ok(()));
        assert_eq!(
            check(&request(3, 7), &[(1, 0.9), (0, 0.5), (2, 0.1)]),
            Ok(())
        );
        for (req, ranked, why) in [
            (request(3, 0), &[(1, 0.9), (0, 0.5)][..], "2 results"),
            (
                request(3, 0),
                &[(1, 0.9), (1, 0.5), (2, 0.1)][..],
                "repeated",
            ),
            (
                request(3, 0),
                &[(1, 0.9), (0, 0.5), (3, 0.1)][..],
                "out of 3",
            ),
            (request(3, 0), &[(1, 0.1), (0, 0.5), (2, 0.0)][..], "above"),
            (request(2, 0), &[(1, f32::NAN), (0, 0.5)][..], "NaN"),
        ] {
            let error = check(&req, ranked).unwrap_err();
            assert!(error.contains(why), "{why}: {error}");
        }
        let mut echo = request(2, 0);
        echo.return_documents = true;
        let mut answer = response(&[(1, 0.9), (0, 0.5)]);
        assert!(rerank(&echo, &answer).unwrap_err().contains("echoed"));
        answer.results[0].document = Some("d1".into());
        answer.results[1].document = Some("d0".into());
        assert_eq!(rerank(&echo, &answer), Ok(()));
    }

    #[test]
    fn a_stream_must_answer_each_request_once_and_refuse_the_bad_one() {
        use pb::rerank_stream_response::Outcome;
        let mut requests = vec![request(2, 0), request(2, 0), request(2, 0)];
        for (i, r) in requests.iter_mut().enumerate() {
            r.request_id = format!("r{i}");
        }
        let ok = |id: &str| pb::RerankStreamResponse {
            request_id: id.into(),
            outcome: Some(Outcome::Response(pb::RerankResponse {
                request_id: id.into(),
                ..response(&[(0, 0.9), (1, 0.5)])
            })),
        };
        let refused = |id: &str, code: tonic::Code| pb::RerankStreamResponse {
            request_id: id.into(),
            outcome: Some(Outcome::Error(pb::RequestError {
                code: code as i32,
                message: "empty query".into(),
            })),
        };
        let good = [
            ok("r2"),
            refused("r1", tonic::Code::InvalidArgument),
            ok("r0"),
        ];
        assert_eq!(stream(&requests, 1, &good), Ok(()));
        for (answers, why) in [
            (vec![ok("r2"), ok("r0")], "2 answers"),
            (
                vec![
                    ok("r2"),
                    ok("r2"),
                    refused("r1", tonic::Code::InvalidArgument),
                ],
                "twice",
            ),
            (
                vec![ok("r2"), refused("r1", tonic::Code::Internal), ok("r0")],
                "INTERNAL",
            ),
            (vec![ok("r2"), ok("r1"), ok("r0")], "a response"),
        ] {
            let error = stream(&requests, 1, &answers).unwrap_err();
            assert!(error.contains(why), "{why}: {error}");
        }
    }

    #[test]
    fn a_progressive_call_must_end_with_its_final() {
        use pb::rerank_progress::Update;
        let req = request(2, 0);
        let partial = |scored, total| {
            Update::Partial(pb::PartialResults {
                results: vec![],
                scored,
                total,
            })
        };
        let last = Update::Final(response(&[(0, 0.9), (1, 0.5)]));
        assert_eq!(
            progressive(&req, &[partial(1, 2), partial(2, 2), last.clone()]),
            Ok(())
        );
        assert!(progressive(&req, &[partial(1, 2)])
            .unwrap_err()
            .contains("without a final"));
        assert!(progressive(&req, &[partial(3, 2), last.clone()])
            .unwrap_err()
            .contains("scored 3"));
        assert!(progressive(&req, &[last.clone(), last])
            .unwrap_err()
            .contains("second final"));
    }

    #[test]
    fn pairs_need_one_finite_score_each() {
        let req = pb::ScorePairsRequest {
            pairs: vec![pb::Pair::default(); 2],
            ..Default::default()
        };
        let answer = |scores: Vec<f32>| pb::ScorePairsResponse {
            scores,
            ..Default::default()
        };
        assert_eq!(pairs(&req, &answer(vec![0.1, 0.2])), Ok(()));
        assert!(pairs(&req, &answer(vec![0.1]))
            .unwrap_err()
            .contains("1 scores"));
        assert!(pairs(&req, &answer(vec![0.1, f32::INFINITY]))
            .unwrap_err()
            .contains("inf"));
    }
}
