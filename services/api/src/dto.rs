//! Request bodies as they arrive (DTOs) and their conversion into domain types.
//!
//! The register and commit bodies are the original Consumer's, byte for byte (see
//! `fixtures/original-register.json`, `fixtures/original-commit.json`); our additions are
//! optional. Parsing goes through `serde_path_to_error`, so a type error names the field's JSON
//! path (`measurement.fields.clients`).

use chrono::{DateTime, NaiveDateTime, Utc};
use protocol::{ErrorEntry, RunInfo, StatsEntry, StatsPayload, ValidationError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
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

/// `POST /apiv0.1/events/register`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// RFC 3339 start time.
    pub started_at: String,
    /// The registering machine.
    #[serde(default)]
    pub host: Option<String>,
    /// Run parameters and tags.
    pub measurement: RegisterMeasurement,
    /// Idempotency key: the same key under the same API key gives the same uuid.
    #[serde(default)]
    pub run_key: Option<String>,
    /// The registering node (default `default`, as for stats and commit).
    #[serde(default)]
    pub node_id: Option<String>,
    /// `loadgen`, `locust`, …
    #[serde(default)]
    pub tool: Option<String>,
    /// Nodes expected to join (cluster mode).
    #[serde(default, deserialize_with = "protocol::lenient::opt_count")]
    pub expected_nodes: Option<u64>,
}

/// `measurement` of a register body.
#[derive(Debug, Deserialize)]
pub struct RegisterMeasurement {
    /// Numeric parameters.
    pub fields: RegisterFields,
    /// Tags.
    pub tags: RegisterTags,
}

/// `measurement.fields` of a register body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterFields {
    /// Users planned.
    #[serde(deserialize_with = "protocol::lenient::count")]
    pub clients: u64,
    /// Spawn rate, users/s.
    #[serde(default)]
    pub hatch_rate: Option<f64>,
    /// Planned requests (0 for time-bound runs).
    #[serde(default, deserialize_with = "protocol::lenient::opt_count")]
    pub requests: Option<u64>,
}

/// `measurement.tags` of a register body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterTags {
    /// The system under test.
    #[serde(default)]
    pub target_host: Option<String>,
    /// `single` or `cluster`.
    #[serde(default)]
    pub mode: Option<String>,
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
        check_len(&host, "host", 255)?;
        check_len(&target_host, "measurement.tags.targetHost", 1000)?;
        check_len(&mode, "measurement.tags.mode", 64)?;
        let expected_nodes = match r.expected_nodes {
            Some(n) => Some(u32::try_from(n).map_err(|_| {
                ValidationError::new("expectedNodes", "must be at most 4294967295")
            })?),
            None => None,
        };
        let tool = r.tool.unwrap_or_default();
        check_len(&tool, "tool", 64)?;
        if let Some(k) = &r.run_key {
            check_len(k, "runKey", 200)?;
            if k.is_empty() {
                return Err(ValidationError::new("runKey", "must not be empty"));
            }
        }
        let node_id = r
            .node_id
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NODE.into());
        check_len(&node_id, "nodeId", 200)?;
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

fn take_node_and_seq(
    obj: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(Option<String>, Option<u64>), ValidationError> {
    let node = match obj.remove("nodeId") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => {
            check_len(&s, "nodeId", 200)?;
            Some(s)
        }
        Some(_) => return Err(ValidationError::new("nodeId", "must be a string")),
    };
    let seq = match obj.remove("seq") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            as_count(&v)
                .ok_or_else(|| ValidationError::new("seq", "must be a non-negative integer"))?,
        ),
    };
    Ok((node, seq))
}

/// A JSON count: a non-negative integer or an integral float (see `protocol::lenient`).
fn as_count(v: &serde_json::Value) -> Option<u64> {
    protocol::lenient::count(v).ok()
}

fn default_seq() -> u64 {
    Utc::now().timestamp_micros().max(0) as u64
}

/// Parses a stats post body.
pub fn parse_stats(bytes: &[u8]) -> Result<StatsPost, ValidationError> {
    let value: serde_json::Value = parse(bytes)?;
    let serde_json::Value::Object(mut obj) = value else {
        return Err(ValidationError::new("$", "must be a JSON object"));
    };
    let (node, seq) = take_node_and_seq(&mut obj)?;
    let payload: StatsPayload = parse_value(serde_json::Value::Object(obj), "")?;
    payload.validate("").map_err(|e| {
        ValidationError::new(e.field.trim_start_matches('.').to_string(), e.message)
    })?;
    Ok(StatsPost {
        node_id: node
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NODE.into()),
        seq: seq.unwrap_or_else(default_seq),
        payload,
    })
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

/// One row of Locust's web `/stats/requests` JSON (`stats[]`).
#[derive(Debug, Deserialize)]
struct WebRow {
    #[serde(default)]
    method: Option<String>,
    name: String,
    #[serde(deserialize_with = "protocol::lenient::count")]
    num_requests: u64,
    #[serde(default, deserialize_with = "protocol::lenient::count")]
    num_failures: u64,
    #[serde(default)]
    avg_response_time: f64,
    #[serde(default)]
    min_response_time: Option<f64>,
    #[serde(default)]
    max_response_time: Option<f64>,
    #[serde(default)]
    avg_content_length: f64,
}

/// Locust's web `/stats/requests` JSON.
#[derive(Debug, Deserialize)]
struct WebStats {
    stats: Vec<WebRow>,
    #[serde(default)]
    errors: Vec<ErrorEntry>,
    #[serde(default, deserialize_with = "protocol::lenient::count")]
    user_count: u64,
}

/// Parses an original commit body (`requestStats` as a list of `StatsEntry.serialize()` objects
/// or as Locust's web `/stats/requests` JSON, which has no histogram: its percentiles are then
/// unknown and the summary reports min/avg/max only) plus our optional `nodeId`, `seq`,
/// `userCount` and `errors`.
pub fn parse_commit(bytes: &[u8]) -> Result<Commit, ValidationError> {
    let value: serde_json::Value = parse(bytes)?;
    let serde_json::Value::Object(mut obj) = value else {
        return Err(ValidationError::new("$", "must be a JSON object"));
    };
    let (node, seq) = take_node_and_seq(&mut obj)?;
    let uuid_text = match obj.get("uuid") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err(ValidationError::new("uuid", "must be a string")),
        None => return Err(ValidationError::new("uuid", "missing field `uuid`")),
    };
    let event_id = Uuid::parse_str(&uuid_text)
        .map_err(|e| ValidationError::new("uuid", format!("not a uuid: {e}")))?;
    if let Some(s) = obj.get("startedAt").filter(|v| !v.is_null()) {
        let s = s
            .as_str()
            .ok_or_else(|| ValidationError::new("startedAt", "must be a string"))?;
        parse_time(s, "startedAt")?;
    }
    let host = match obj.get("host") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err(ValidationError::new("host", "must be a string")),
    };
    check_len(&host, "host", 255)?;
    let user_count =
        match obj.get("userCount") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(as_count(v).ok_or_else(|| {
                ValidationError::new("userCount", "must be a non-negative integer")
            })?),
        };
    let thresholds: Vec<protocol::ThresholdVerdict> = match obj.remove("thresholds") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(v) => parse_value(v, "thresholds")?,
    };
    if thresholds.len() > 100 {
        return Err(ValidationError::new(
            "thresholds",
            "more than 100 thresholds",
        ));
    }
    for (i, t) in thresholds.iter().enumerate() {
        t.validate(&format!("thresholds[{i}]"))?;
    }
    let extra_errors: Vec<ErrorEntry> = match obj.remove("errors") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(v) => parse_value(v, "errors")?,
    };
    let stats_value = obj
        .get_mut("measurement")
        .and_then(|m| m.get_mut("fields"))
        .and_then(|f| f.get_mut("requestStats"))
        .map(serde_json::Value::take)
        .ok_or_else(|| {
            ValidationError::new(
                "measurement.fields.requestStats",
                "missing field `requestStats`",
            )
        })?;
    let field = "measurement.fields.requestStats";
    let (entries, errors, users) = match stats_value {
        serde_json::Value::Array(_) => {
            let entries: Vec<StatsEntry> = parse_value(stats_value, field)?;
            (entries, extra_errors, user_count.unwrap_or(0))
        }
        serde_json::Value::Object(_) => {
            let web: WebStats = parse_value(stats_value, field)?;
            let entries = web
                .stats
                .into_iter()
                .filter(|r| r.name != protocol::AGGREGATED)
                .map(|r| StatsEntry {
                    name: r.name,
                    method: r.method.unwrap_or_default(),
                    num_requests: r.num_requests,
                    num_failures: r.num_failures,
                    total_response_time: r.avg_response_time * r.num_requests as f64,
                    min_response_time: r.min_response_time,
                    max_response_time: r.max_response_time.unwrap_or(0.0),
                    total_content_length: (r.avg_content_length * r.num_requests as f64).round()
                        as u64,
                    response_times: Default::default(),
                    start_time: 0.0,
                    last_request_timestamp: None,
                })
                .collect();
            let mut errors = web.errors;
            errors.extend(extra_errors);
            (entries, errors, user_count.unwrap_or(web.user_count))
        }
        _ => {
            return Err(ValidationError::new(
                field,
                "must be a list of stats entries or Locust's /stats/requests object",
            ))
        }
    };
    let stats = StatsPayload::from_entries(entries, errors, users, "stopped");
    stats.validate(field)?;
    Ok(Commit {
        event_id,
        node_id: node
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NODE.into()),
        host,
        seq: seq.unwrap_or_else(default_seq),
        stats,
        thresholds,
    })
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
        assert_eq!(c.stats.entries[0].response_times.get(&40), Some(&19));
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
