//! `GET /v1/event/stream`: the server's events as Nomad streams them.
//!
//! Newline-delimited JSON: one frame `{"Index":N,"Events":[…]}` per Raft index with
//! matching events, and a `{}` heartbeat when nothing came for
//! [`EVENT_HEARTBEAT_MS`]. `topic=Topic:Key` (repeatable; `Job`, `Job:*`, `*` or
//! `Allocation:<id>`) picks events by topic and by key or filter key; `namespace` keeps
//! one namespace (`*` all; nodes belong to none and always pass); `index` starts after
//! that index. The events come from the server's ring through blocking reads, so the
//! stream reads what the replicated state produced and decides nothing.

use super::{ApiError, ApiResult, Params};
use crate::agent::AgentHandle;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query as QueryString, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use drover_core::server::{ApiReply, ApiRequest, Query, QueryResult};
use drover_core::state::{Event, EventPayload};
use serde_json::{Value, json};

/// How long the stream may stay silent before a `{}` heartbeat (Nomad's 10 s).
pub const EVENT_HEARTBEAT_MS: u64 = 10_000;

pub(super) fn routes() -> Router<AgentHandle> {
    Router::new().route("/v1/event/stream", get(stream))
}

/// One `topic=Topic:Key` of the query.
#[derive(Clone, Debug, PartialEq)]
struct TopicFilter {
    topic: String,
    key: String,
}

/// The `topic` parameters, every one of them (`*:*` when none is given).
fn topic_filters(pairs: &[(String, String)]) -> Result<Vec<TopicFilter>, ApiError> {
    let mut filters = Vec::new();
    for (_, value) in pairs.iter().filter(|(name, _)| name == "topic") {
        let (topic, key) = value.split_once(':').unwrap_or((value, "*"));
        if topic.is_empty() || key.is_empty() || key.contains(':') {
            return Err(ApiError::bad_request(format!(
                "Invalid key value pair for topic: {value:?}"
            )));
        }
        filters.push(TopicFilter { topic: topic.to_owned(), key: key.to_owned() });
    }
    if filters.is_empty() {
        filters.push(TopicFilter { topic: "*".into(), key: "*".into() });
    }
    Ok(filters)
}

/// Where a subscriber is: what it wants and the last index it was sent.
struct Subscription {
    agent: AgentHandle,
    region: String,
    namespace: String,
    filters: Vec<TopicFilter>,
    after_index: u64,
}

async fn stream(
    State(agent): State<AgentHandle>,
    params: Params,
    QueryString(pairs): QueryString<Vec<(String, String)>>,
) -> ApiResult {
    let subscription = Subscription {
        region: params.region(),
        namespace: params.namespace(),
        filters: topic_filters(&pairs)?,
        after_index: params.u64("index")?.unwrap_or(0),
        agent,
    };
    let body = Body::from_stream(futures_util::stream::unfold(subscription, Subscription::next));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

impl Subscription {
    /// The next bytes to send: the frames of the next events that match, or a heartbeat
    /// when none came in time; `None` ends the stream (the agent is shutting down).
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Subscription)> {
        loop {
            let query = Query::Events { after_index: self.after_index };
            let request = ApiRequest::Read {
                query,
                min_index: self.after_index,
                wait_ms: EVENT_HEARTBEAT_MS,
            };
            let reply = self.agent.call(&self.region, request).await.ok()?;
            let ApiReply::Read { index, result: QueryResult::Events(events) } = reply else {
                return None;
            };
            if events.is_empty() {
                return Some((Ok(Bytes::from_static(b"{}\n")), self));
            }
            self.after_index = index;
            let frames = self.frames(&events);
            if !frames.is_empty() {
                return Some((Ok(Bytes::from(frames)), self));
            }
        }
    }

    fn wants(&self, event: &Event) -> bool {
        let namespace = event.namespace();
        let in_namespace =
            namespace.is_empty() || self.namespace == "*" || self.namespace == namespace;
        in_namespace && self.filters.iter().any(|f| event.matches(&f.topic, &f.key))
    }

    /// One line per index among the wanted events, in index order.
    fn frames(&self, events: &[Event]) -> Vec<u8> {
        let wanted: Vec<&Event> = events.iter().filter(|e| self.wants(e)).collect();
        let mut out = Vec::new();
        for batch in wanted.chunk_by(|a, b| a.index == b.index) {
            let frame = json!({
                "Index": batch[0].index,
                "Events": batch.iter().map(|e| event_json(e)).collect::<Vec<_>>(),
            });
            if serde_json::to_writer(&mut out, &frame).is_ok() {
                out.push(b'\n');
            }
        }
        out
    }
}

/// One event in Nomad's form; the payload is keyed by its topic, nodes without their
/// secret.
fn event_json(event: &Event) -> Value {
    let object = match &event.payload {
        EventPayload::Job(job) => serde_json::to_value(&**job),
        EventPayload::Node(node) => {
            let mut node = (**node).clone();
            node.secret_id = String::new();
            serde_json::to_value(node)
        }
        EventPayload::Allocation(alloc) => serde_json::to_value(&**alloc),
        EventPayload::Evaluation(eval) => serde_json::to_value(&**eval),
        EventPayload::Deployment(deployment) => serde_json::to_value(&**deployment),
    };
    let filter_keys = event.filter_keys();
    json!({
        "Topic": event.topic(),
        "Type": event.event_type.as_str(),
        "Key": event.key(),
        "Namespace": event.namespace(),
        "FilterKeys": if filter_keys.is_empty() { Value::Null } else { json!(filter_keys) },
        "Index": event.index,
        "Payload": { event.topic(): object.unwrap_or(Value::Null) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: &[&str], expected: Result<Vec<(&str, &str)>, &str>) {
        let pairs: Vec<(String, String)> =
            query.iter().map(|t| ("topic".to_owned(), (*t).to_owned())).collect();
        let got = topic_filters(&pairs)
            .map(|filters| {
                filters.into_iter().map(|f| (f.topic, f.key)).collect::<Vec<(String, String)>>()
            })
            .map_err(|e| e.message);
        let expected = expected
            .map(|pairs| pairs.iter().map(|(t, k)| ((*t).to_owned(), (*k).to_owned())).collect())
            .map_err(str::to_owned);
        assert_eq!(got, expected);
    }

    #[test]
    fn topics_parse_as_nomad_reads_them() {
        check(&[], Ok(vec![("*", "*")]));
        check(&["Job"], Ok(vec![("Job", "*")]));
        check(&["Job:*", "Allocation:abc"], Ok(vec![("Job", "*"), ("Allocation", "abc")]));
        check(&["Job:"], Err("Invalid key value pair for topic: \"Job:\""));
        check(&["Job:a:b"], Err("Invalid key value pair for topic: \"Job:a:b\""));
    }
}
