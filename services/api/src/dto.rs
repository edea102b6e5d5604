//! Request bodies ([`protocol::api`]'s wire types) parsed and converted into the API's domain
//! types with `TryFrom`: [`Registration`], [`StatsPost`], [`Commit`].
//!
//! The register and commit bodies are the original Consumer's, byte for byte (see
//! `fixtures/original-register.json`, `fixtures/original-commit.json`); our additions are
//! optional. Parsing goes through `serde_path_to_error`, so a type error names the field's JSON
//! path (`measurement.fields.clients`); the conversions check the limits of [`protocol::api`].

use chrono::{DateTime, NaiveDateTime, Utc};
use protocol::api::{self, CommitRequest, RegisterRequest, RequestStats, StatsRequest, WebRow};
use protocol::{RunInfo, StatsEntry, StatsPayload, ValidationError};
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// Parses `bytes` as JSON into `T`; errors carry the field path (prefixed with `prefix`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ValidationError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| path_error(e, ""))
}

fn parse_value<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(value).map_err(|e| path_error(e, prefix))
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>, prefix: &str) -> ValidationError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let field = match (prefix.is_empty(), path == ".") {
        (true, true) => "$".to_string(),
        (true, false) => path,
        (false, true) => prefix.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    };
    // serde reports a missing field at its parent; name the field itself.
    let msg = inner.to_string();
    let field = match msg
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        Some(missing) if field == "$" => missing.to_string(),
        Some(missing) => format!("{field}.{missing}"),
        None => field,
    };
    let msg = match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    ValidationError::new(field, msg)
}

/// The node id of a register, stats post or commit that names none. The same for all three, so
/// a client that never sends `nodeId` is one node whose commit supersedes its stats; cluster
/// nodes must each send their own.
pub const DEFAULT_NODE: &str = "default";

/// Parses a timestamp: RFC 3339, or ISO 8601 without an offset (taken as UTC, as Python's
/// `datetime.utcnow().isoformat()` sends it).
pub fn parse_time(s: &str, field: &str) -> Result<DateTime<Utc>, ValidationError> {
    let parsed = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .find_map(|fmt| NaiveDateTime::parse_from_str(s, fmt).ok())
                .map(|t| t.and_utc())
        });
    if let Some(t) = parsed {
        // InfluxDB stores nanoseconds since the epoch in an i64: 1677-09-21 to 2262-04-11.
        if t.timestamp_nanos_opt().is_none() {
            return Err(ValidationError::new(
                field,
                format!("{s:?} is outside the range InfluxDB can store (1677-09-22 to 2262-04-11)"),
            ));
        }
        return Ok(t);
    }
    Err(ValidationError::new(
        field,
        format!("{s:?} is not an RFC 3339 timestamp (2026-11-29T08:00:00Z)"),
    ))
}

fn check_len(value: &str, field: &str, max: usize) -> Result<(), ValidationError> {
    if value.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("longer than {max} characters"),
        ));
    }
    Ok(())
}

/// A node id as given, or [`DEFAULT_NODE`] when none (or an empty one) was.
fn node_or_default(node: Option<String>) -> String {
    node.filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_NODE.into())
}

/// A register, checked.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Run metadata for the `registered` message.
    pub info: RunInfo,
    /// The registering node.
    pub node_id: String,
    /// Idempotency key.
    pub run_key: Option<String>,
}

impl TryFrom<RegisterRequest> for Registration {
    type Error = ValidationError;

    fn try_from(r: RegisterRequest) -> Result<Self, Self::Error> {
        let started_at = parse_time(&r.started_at, "startedAt")?;
        let f = &r.measurement.fields;
        let hatch_rate = f.hatch_rate.unwrap_or(0.0);
        if !hatch_rate.is_finite() || hatch_rate < 0.0 {
            return Err(ValidationError::new(
                "measurement.fields.hatchRate",
                "must be a finite, non-negative number",
            ));
        }
        let host = r.host.unwrap_or_default();
        let target_host = r.measurement.tags.target_host.unwrap_or_default();
        let mode = r.measurement.tags.mode.unwrap_or_default();
        check_len(&host, "host", api::MAX_HOST_LEN)?;
        check_len(
            &target_host,
            "measurement.tags.targetHost",
            api::MAX_TARGET_HOST_LEN,
        )?;
        check_len(&mode, "measurement.tags.mode", api::MAX_MODE_LEN)?;
        let expected_nodes = match r.expected_nodes {
            Some(n) if n > api::MAX_EXPECTED_NODES => {
                return Err(ValidationError::new(
                    "expectedNodes",
                    format!("must be at most {}", api::MAX_EXPECTED_NODES),
                ))
            }
            // At most `MAX_EXPECTED_NODES`, which is `u32::MAX`.
            Some(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            None => None,
        };
        let tool = r.tool.unwrap_or_default();
        check_len(&tool, "tool", api::MAX_TOOL_LEN)?;
        if let Some(k) = &r.run_key {
            check_len(k, "runKey", api::MAX_RUN_KEY_LEN)?;
            if k.is_empty() {
                return Err(ValidationError::new("runKey", "must not be empty"));
            }
        }
        let node_id = node_or_default(r.node_id);
        check_len(&node_id, "nodeId", api::MAX_NODE_ID_LEN)?;
        Ok(Registration {
            info: RunInfo {
                started_at,
                host,
                clients: f.clients,
                hatch_rate,
                requests: f.requests.unwrap_or(0),
                target_host,
                mode,
                tool,
                expected_nodes,
            },
            node_id,
            run_key: r.run_key,
        })
    }
}

/// A node's stats post, checked: `POST /apiv0.1/events/{uuid}/stats` with the stats payload
/// plus optional `nodeId` and `seq`.
#[derive(Debug, Clone)]
pub struct StatsPost {
    /// The sending node (default `default`).
    pub node_id: String,
    /// Its sequence number (default: microseconds since the epoch, increasing per node).
    pub seq: u64,
    /// Cumulative stats.
    pub payload: StatsPayload,
}

impl TryFrom<StatsRequest> for StatsPost {
    type Error = ValidationError;

    fn try_from(r: StatsRequest) -> Result<Self, Self::Error> {
        if let Some(n) = &r.node_id {
            check_len(n, "nodeId", api::MAX_NODE_ID_LEN)?;
        }
        let (node_id, seq) = (r.node_id.clone(), r.seq);
        let payload = r.payload();
        payload.validate("").map_err(|e| {
            ValidationError::new(e.field.trim_start_matches('.').to_string(), e.message)
        })?;
        Ok(StatsPost {
            node_id: node_or_default(node_id),
            seq: seq.unwrap_or_else(default_seq),
            payload,
        })
    }
}

fn default_seq() -> u64 {
    Utc::now().timestamp_micros().max(0) as u64
}

/// Parses a JSON object body: not JSON, or not an object, is an error at `$`.
fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ValidationError> {
    let value: serde_json::Value = parse(bytes)?;
    if !value.is_object() {
        return Err(ValidationError::new("$", "must be a JSON object"));
    }
    parse_value(value, "")
}

/// Parses a stats post body. A valid body is deserialized straight into its type (the hot
/// path: a load generator posts one per node every few seconds); one that fails that goes the
/// checked way ([`parse_object`]), whose errors name the field, so both accept and refuse the
/// same bodies with the same errors.
pub fn parse_stats(bytes: &[u8]) -> Result<StatsPost, ValidationError> {
    if let Ok(post) = serde_json::from_slice::<StatsRequest>(bytes)
        .map_err(drop)
        .and_then(|r| StatsPost::try_from(r).map_err(drop))
    {
        return Ok(post);
    }
    StatsPost::try_from(parse_object::<StatsRequest>(bytes)?)
}

/// A commit, checked.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The run.
    pub event_id: Uuid,
    /// The committing machine.
    pub host: String,
    /// The committing node (default `default`, as for register and stats).
    pub node_id: String,
    /// Its sequence number.
    pub seq: u64,
    /// The node's final stats.
    pub stats: StatsPayload,
    /// The load generator's threshold verdicts (optional `thresholds` in the body).
    pub thresholds: Vec<protocol::ThresholdVerdict>,
}

/// A row of Locust's web `/stats/requests` JSON as a stats entry: no histogram, so its
/// percentiles are the ones Locust reported (median, 95th, 99th) and no others.
fn web_entry(r: WebRow) -> StatsEntry {
    let reported_percentiles = r.reported_percentiles();
    StatsEntry {
        name: r.name,
        method: r.method.unwrap_or_default(),
        num_requests: r.num_requests,
        num_failures: r.num_failures,
        total_response_time: r.avg_response_time * r.num_requests as f64,
        min_response_time: r.min_response_time,
        max_response_time: r.max_response_time.unwrap_or(0.0),
        total_content_length: (r.avg_content_length * r.num_requests as f64).round() as u64,
        response_times: Default::default(),
        start_time: 0.0,
        last_request_timestamp: None,
        reported_percentiles,
        hdr_histogram: None,
    }
}

impl TryFrom<CommitRequest> for Commit {
    type Error = ValidationError;

    /// An original commit (`requestStats` as a list of `StatsEntry.serialize()` objects or as
    /// Locust's web `/stats/requests` JSON) plus our optional `nodeId`, `seq`, `userCount`,
    /// `errors` and `thresholds`.
    fn try_from(c: CommitRequest) -> Result<Self, Self::Error> {
        if let Some(n) = &c.node_id {
            check_len(n, "nodeId", api::MAX_NODE_ID_LEN)?;
        }
        if let Some(s) = &c.started_at {
            parse_time(s, "startedAt")?;
        }
        let host = c.host.unwrap_or_default();
        check_len(&host, "host", api::MAX_HOST_LEN)?;
        let thresholds = c.thresholds.unwrap_or_default();
        if thresholds.len() > api::MAX_THRESHOLDS {
            return Err(ValidationError::new(
                "thresholds",
                format!("more than {} thresholds", api::MAX_THRESHOLDS),
            ));
        }
        for (i, t) in thresholds.iter().enumerate() {
            t.validate(&format!("thresholds[{i}]"))?;
        }
        let extra_errors = c.errors.unwrap_or_default();
        let field = "measurement.fields.requestStats";
        let (entries, errors, users) = match c.measurement.fields.request_stats {
            None => return Err(ValidationError::new(field, "missing field `requestStats`")),
            Some(RequestStats::Entries(entries)) => {
                (entries, extra_errors, c.user_count.unwrap_or(0))
            }
            Some(RequestStats::Web(web)) => {
                // Locust's total row is recognised by `from_entries` as in the list shape.
                let entries = web.stats.into_iter().map(web_entry).collect();
                let mut errors = web.errors;
                errors.extend(extra_errors);
                (entries, errors, c.user_count.unwrap_or(web.user_count))
            }
        };
        let mut stats = StatsPayload::from_entries(entries, errors, users, "stopped");
        stats.stopped_at = c.stopped_at;
        stats.validate(field)?;
        Ok(Commit {
            event_id: c.uuid,
            node_id: node_or_default(c.node_id),
            host,
            seq: c.seq.unwrap_or_else(default_seq),
            stats,
            thresholds,
        })
    }
}

/// Parses a commit body.
pub fn parse_commit(bytes: &[u8]) -> Result<Commit, ValidationError> {
    Commit::try_from(parse_object::<CommitRequest>(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTER: &str = include_str!("../../../fixtures/original-register.json");
    const COMMIT: &str = include_str!("../../../fixtures/original-commit.json");

    #[test]
    fn original_register_parses() {
        let r: RegisterRequest = parse(REGISTER.as_bytes()).expect("parses");
        let reg = Registration::try_from(r).expect("valid");
        assert_eq!(reg.info.clients, 5);
        assert_eq!(reg.info.target_host, "http://127.0.0.1:8080");
        assert_eq!(reg.node_id, DEFAULT_NODE);
    }

    #[test]
    fn string_clients_names_the_field() {
        let body = REGISTER.replace("\"clients\": 5", "\"clients\": \"five\"");
        let err = parse::<RegisterRequest>(body.as_bytes()).expect_err("type error");
        assert_eq!(err.field, "measurement.fields.clients");
        let body = REGISTER.replace("\"clients\": 5,", "");
        let err = parse::<RegisterRequest>(body.as_bytes()).expect_err("missing");
        assert_eq!(err.field, "measurement.fields.clients");
    }

    #[test]
    fn bad_started_at_names_the_field() {
        let body = REGISTER.replace("2026-11-29T08:00:00Z", "yesterday");
        let r: RegisterRequest = parse(body.as_bytes()).expect("parses");
        assert_eq!(
            Registration::try_from(r).expect_err("bad time").field,
            "startedAt"
        );
    }

    #[test]
    fn original_commit_parses() {
        let body = COMMIT.replace(
            "REPLACE-WITH-UUID-FROM-REGISTER",
            "0b6f8d4e-2f7a-4c1e-9a55-3f1f2c7d9e10",
        );
        let c = parse_commit(body.as_bytes()).expect("parses");
        assert_eq!(c.stats.total.num_requests, 100);
        assert_eq!(c.stats.entries[0].response_times.get(40), Some(19));
        assert_eq!(c.node_id, DEFAULT_NODE);
    }

    #[test]
    fn commit_accepts_locust_web_stats() {
        let body = r#"{"uuid":"0b6f8d4e-2f7a-4c1e-9a55-3f1f2c7d9e10","host":"h","measurement":{"fields":{"requestStats":
            {"stats":[{"method":"GET","name":"/","num_requests":10,"num_failures":1,"avg_response_time":5.0,
            "min_response_time":1,"max_response_time":9,"avg_content_length":100},
            {"method":null,"name":"Aggregated","num_requests":10,"num_failures":1,"avg_response_time":5.0}],
            "errors":[{"method":"GET","name":"/","error":"500","occurrences":1}],"user_count":3}},"tags":{}}}"#;
        let c = parse_commit(body.as_bytes()).expect("parses");
        assert_eq!(c.stats.total.num_requests, 10);
        assert_eq!(c.stats.entries.len(), 1);
        assert_eq!(c.stats.errors.len(), 1);
        assert_eq!(c.stats.user_count, 3);
    }

    /// Issue 17 item 2: Locust's web rows keep the median, p95 and p99 Locust reported (for the
    /// endpoint and, from its own row, the total), and no other percentile exists for them.
    #[test]
    fn locust_web_rows_keep_the_percentiles_locust_reported() {
        let row = |method: &str, name: &str| {
            format!(
                r#"{{"method":{method},"name":"{name}","num_requests":10,"num_failures":0,
                "avg_response_time":25.0,"min_response_time":3,"max_response_time":130,
                "avg_content_length":100.0,"median_response_time":12,
                "response_time_percentile_0.95":40,"response_time_percentile_0.99":120}}"#
            )
        };
        let body = format!(
            r#"{{"uuid":"0b6f8d4e-2f7a-4c1e-9a55-3f1f2c7d9e10","measurement":{{"fields":
            {{"requestStats":{{"stats":[{},{}],"errors":[]}}}}}}}}"#,
            row(r#""GET""#, "/"),
            row("null", "Aggregated")
        );
        let c = parse_commit(body.as_bytes()).expect("parses");
        for e in [&c.stats.entries[0], &c.stats.total] {
            assert_eq!(e.measured_percentile(0.5), Some(12.0), "{e:?}");
            assert_eq!(e.measured_percentile(0.95), Some(40.0), "{e:?}");
            assert_eq!(e.measured_percentile(0.99), Some(120.0), "{e:?}");
            assert_eq!(e.measured_percentile(0.9), None, "{e:?}");
        }
    }

    /// Issue 17 item 3: Locust's total row in a list `requestStats` is the total, not an
    /// endpoint (it doubled the stored Aggregated count).
    #[test]
    fn locust_total_row_in_a_list_is_the_total() {
        let body = r#"{"uuid":"0b6f8d4e-2f7a-4c1e-9a55-3f1f2c7d9e10","host":"h","measurement":{"fields":{"requestStats":[
            {"method":"GET","name":"/","num_requests":10,"num_failures":0,"total_response_time":50.0,
             "min_response_time":1,"max_response_time":9,"total_content_length":100,"response_times":{"5":10},
             "start_time":1795939200.0,"last_request_timestamp":1795939210.0},
            {"method":null,"name":"Aggregated","num_requests":10,"num_failures":0,"total_response_time":50.0,
             "min_response_time":1,"max_response_time":9,"total_content_length":100,"response_times":{"5":10},
             "start_time":1795939200.0,"last_request_timestamp":1795939210.0}]},"tags":{}}}"#;
        let c = parse_commit(body.as_bytes()).expect("parses");
        assert_eq!(c.stats.total.num_requests, 10, "not doubled");
        assert_eq!(c.stats.entries.len(), 1);
        assert_eq!(c.stats.entries[0].name, "/");
        // An endpoint that is really named "Aggregated" (it has a method) stays an endpoint.
        let named = body.replace(
            r#""method":null,"name":"Aggregated""#,
            r#""method":"GET","name":"Aggregated""#,
        );
        let c = parse_commit(named.as_bytes()).expect("parses");
        assert_eq!(c.stats.entries.len(), 2);
        assert_eq!(c.stats.total.num_requests, 20);
        // Only the total row: it is the total.
        let only = r#"{"uuid":"0b6f8d4e-2f7a-4c1e-9a55-3f1f2c7d9e10","measurement":{"fields":{"requestStats":[
            {"method":null,"name":"Aggregated","num_requests":7,"num_failures":1}]}}}"#;
        let c = parse_commit(only.as_bytes()).expect("parses");
        assert_eq!((c.stats.total.num_requests, c.stats.entries.len()), (7, 0));
        // The same row among a stats post's entries is left out too.
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../../fixtures/stats-message.json"))
                .expect("json");
        let mut payload = fixture["payload"].clone();
        let mut total_row = payload["total"].clone();
        total_row["method"] = serde_json::Value::Null;
        total_row["name"] = "Aggregated".into();
        let n = payload["entries"].as_array().map_or(0, Vec::len);
        payload["entries"]
            .as_array_mut()
            .expect("entries")
            .push(total_row);
        let post = parse_stats(payload.to_string().as_bytes()).expect("valid");
        assert_eq!(post.payload.entries.len(), n);
    }

    #[test]
    fn stats_errors_name_the_field() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../../fixtures/stats-message.json"))
                .expect("json");
        let mut payload = fixture["payload"].clone();
        payload["nodeId"] = "n1".into();
        payload["seq"] = 7.into();
        let ok = parse_stats(payload.to_string().as_bytes()).expect("valid");
        assert_eq!((ok.node_id.as_str(), ok.seq), ("n1", 7));
        payload["entries"][0]["num_requests"] = (-1).into();
        assert_eq!(
            parse_stats(payload.to_string().as_bytes())
                .expect_err("negative")
                .field,
            "entries[0].num_requests"
        );
        payload["entries"][0]["num_requests"] = 42.into();
        payload["entries"][0]["name"] = "x".repeat(1001).into();
        assert_eq!(
            parse_stats(payload.to_string().as_bytes())
                .expect_err("long")
                .field,
            "entries[0].name"
        );
    }
}
