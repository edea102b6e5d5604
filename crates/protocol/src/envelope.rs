//! The AMQP message envelope (`schema: "loadtest.v1"`) and its payloads.
//!
//! On the wire every message is persistent JSON:
//! `{"schema":"loadtest.v1","kind":"stats","eventId":"uuid","nodeId":"pod-3","seq":42,
//!   "sentAt":"2026-11-29T08:00:00Z","token":"…","payload":{…}}`.
//! [`WireEnvelope`] is that DTO; [`Envelope`] is the parsed domain type (`TryFrom`), whose
//! [`Body`] is a tagged enum, one variant per `kind`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{StatsPayload, ValidationError};

/// The schema version this crate reads and writes.
pub const SCHEMA: &str = "loadtest.v1";

/// Routing keys on the topic exchange (`loadtest` by default; the exchange, queue and
/// dead-letter names derive from the `amqp.exchange` setting), and the dead-letter header.
pub mod routing {
    /// A run was registered (or a node joined it).
    pub const REGISTERED: &str = "event.registered";
    /// Cumulative stats from one node.
    pub const STATS: &str = "event.stats";
    /// A node (or the coordinator) committed its final stats.
    pub const COMMITTED: &str = "event.committed";
    /// The writer wrote a run's final record.
    pub const COMPLETED: &str = "event.completed";
    /// Header carrying the reason a message was dead-lettered.
    pub const DEATH_REASON_HEADER: &str = "x-loadtest-dead-reason";
}

/// The envelope as it travels (wire DTO). Parse it into [`Envelope`] with `TryFrom`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireEnvelope {
    /// Must be [`SCHEMA`].
    pub schema: String,
    /// `registered`, `stats`, `committed` or `completed`.
    pub kind: String,
    /// The run's uuid.
    pub event_id: String,
    /// The sending node (a load generator process).
    #[serde(default)]
    pub node_id: String,
    /// Per-node sequence number; higher supersedes lower.
    #[serde(default)]
    pub seq: u64,
    /// RFC 3339 send time.
    pub sent_at: String,
    /// The event token (HMAC of the uuid).
    #[serde(default)]
    pub token: String,
    /// On `registered` from the API: the id of the API key that registered the run (a hash
    /// prefix, never the key), so the writer's running set can be counted per key. Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Kind-specific payload.
    pub payload: serde_json::Value,
}

/// A parsed, valid envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The run.
    pub event_id: Uuid,
    /// The sending node.
    pub node_id: String,
    /// Per-node sequence number.
    pub seq: u64,
    /// When the sender sent it.
    pub sent_at: DateTime<Utc>,
    /// The event token.
    pub token: String,
    /// The registering API key's id (see [`WireEnvelope::key_id`]).
    pub key_id: Option<String>,
    /// What it carries.
    pub body: Body,
}

/// What a message carries, by `kind`.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `registered`: a run started, or a node joined it.
    Registered(RunInfo),
    /// `stats`: a node's cumulative stats.
    Stats(StatsPayload),
    /// `committed`: a node's final stats.
    Committed(CommitPayload),
    /// `completed`: the writer wrote the run's final record (for notifiers).
    Completed(CompletedPayload),
}

impl Body {
    /// The `kind` string of this body.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Registered(_) => "registered",
            Body::Stats(_) => "stats",
            Body::Committed(_) => "committed",
            Body::Completed(_) => "completed",
        }
    }

    /// The routing key this body is published with.
    pub fn routing_key(&self) -> &'static str {
        match self {
            Body::Registered(_) => routing::REGISTERED,
            Body::Stats(_) => routing::STATS,
            Body::Committed(_) => routing::COMMITTED,
            Body::Completed(_) => routing::COMPLETED,
        }
    }
}

/// The metadata of a run, carried by `registered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    /// When the run started (RFC 3339).
    pub started_at: DateTime<Utc>,
    /// The registering machine.
    #[serde(default)]
    pub host: String,
    /// Users (clients) planned.
    #[serde(default)]
    pub clients: u64,
    /// Spawn rate, users/s (Locust's former "hatch rate").
    #[serde(default)]
    pub hatch_rate: f64,
    /// Planned number of requests (0 when the run is time-bound).
    #[serde(default)]
    pub requests: u64,
    /// The system under test.
    #[serde(default)]
    pub target_host: String,
    /// `single` or `cluster`.
    #[serde(default)]
    pub mode: String,
    /// `loadgen`, `locust`, …
    #[serde(default)]
    pub tool: String,
    /// Nodes expected to join (cluster mode), when known.
    #[serde(default)]
    pub expected_nodes: Option<u32>,
}

/// A node's commit: its final cumulative stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitPayload {
    /// The committing machine.
    #[serde(default)]
    pub host: String,
    /// The node's final cumulative stats.
    pub stats: StatsPayload,
    /// Pass/fail verdicts of the load generator's thresholds (`p95<300ms`), if it had any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<ThresholdVerdict>,
}

/// Longest node id (`nodeId`), in characters.
pub const MAX_NODE_ID_LEN: usize = 200;
/// Longest threshold expression (`p95<300ms`) in a verdict, in characters.
pub const MAX_THRESHOLD_LEN: usize = 200;
/// Longest metric name (`p99.9`, `fail_ratio`) in a verdict, in characters.
pub const MAX_METRIC_LEN: usize = 32;

/// A threshold's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ThresholdOp {
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
}

impl ThresholdOp {
    /// Whether `actual OP limit` holds.
    pub fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            ThresholdOp::Lt => actual < limit,
            ThresholdOp::Le => actual <= limit,
            ThresholdOp::Gt => actual > limit,
            ThresholdOp::Ge => actual >= limit,
        }
    }
}

/// One threshold's verdict, as a load generator judged it on its final stats. The same type
/// travels in an API commit (`thresholds`) and in an AMQP `committed` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThresholdVerdict {
    /// The threshold as given (`p95<300ms`, `fail_ratio<0.01`), at most 200 characters.
    pub threshold: String,
    /// The metric's name (`p95`, `fail_ratio`, …), at most 32 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The endpoint checked (`/api/items`, `GET /api/items`), or `Aggregated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<ThresholdOp>,
    /// The limit, in the same unit.
    #[serde(default)]
    pub limit: Option<f64>,
    /// The measured value (ms for times, a fraction for ratios); `null` when not measured.
    #[serde(default)]
    pub actual: Option<f64>,
    /// Whether it held.
    pub passed: bool,
}

impl ThresholdVerdict {
    /// Checks the verdict; `path` names it in errors (`thresholds[0]`).
    pub fn validate(&self, path: &str) -> Result<(), ValidationError> {
        let texts = [
            ("threshold", Some(&self.threshold), MAX_THRESHOLD_LEN),
            ("metric", self.metric.as_ref(), MAX_METRIC_LEN),
            ("name", self.name.as_ref(), crate::stats::MAX_NAME_LEN),
        ];
        for (field, text, max) in texts {
            if text.is_some_and(|t| t.chars().count() > max) {
                return Err(ValidationError::new(
                    format!("{path}.{field}"),
                    format!("longer than {max} characters"),
                ));
            }
        }
        for (field, v) in [("actual", self.actual), ("limit", self.limit)] {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err(ValidationError::new(
                    format!("{path}.{field}"),
                    "must be a finite number",
                ));
            }
        }
        Ok(())
    }
}

/// Published on `event.completed` after a run's final record is written, for notifiers.
///
/// The fields after `nodes` came later and are optional (an older writer's message has none of
/// them; they are left out of the JSON when unknown). The figures are the run's `Aggregated`
/// totals: for a committed run they are the values of its stored `loadtest_summary` point
/// (`name="Aggregated"`), computed once in the lifecycle; for an expired run, which has no
/// summary point, the same computation over the stats the run had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedPayload {
    /// `committed` or `expired`.
    pub status: String,
    /// Run duration, seconds.
    pub duration_s: f64,
    /// Total requests of all nodes.
    pub requests: u64,
    /// Total failures of all nodes.
    pub failures: u64,
    /// Nodes that took part.
    pub nodes: u32,
    /// The system under test (the register's `targetHost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_host: Option<String>,
    /// The load generator (`loadgen`, `locust`, …), as registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// When the run started (the register's `startedAt`); the run ended `durationS` later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// Users as registered (`clients`, the `loadtest_event` field dashboards show as users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<u64>,
    /// Requests per second over the run (the summary's `rps`); unknown without requests or
    /// without time between the first and the last request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
    /// Failed requests in percent of all requests; unknown without requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_pct: Option<f64>,
    /// Response time percentiles of all requests, ms (the summary's `response_time_p50/p95/p99`);
    /// unknown without requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_time_ms: Option<Percentiles>,
    /// The threshold verdicts of every node that judged some, by node id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<NodeVerdict>,
}

/// Response time percentiles, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// One node's verdict on one threshold: `{"nodeId": "pod-3", "threshold": "p95<300ms",
/// "passed": false, "actual": 412.0, "limit": 300.0}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeVerdict {
    /// The node that judged it.
    pub node_id: String,
    /// The verdict.
    #[serde(flatten)]
    pub verdict: ThresholdVerdict,
}

impl Envelope {
    /// A new envelope stamped now.
    pub fn new(
        event_id: Uuid,
        node_id: impl Into<String>,
        seq: u64,
        token: String,
        body: Body,
    ) -> Self {
        Self {
            event_id,
            node_id: node_id.into(),
            seq,
            sent_at: Utc::now(),
            token,
            key_id: None,
            body,
        }
    }

    /// The same envelope carrying the registering API key's id.
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// The wire DTO of this envelope.
    pub fn to_wire(&self) -> WireEnvelope {
        let payload = match &self.body {
            Body::Registered(p) => serde_json::to_value(p),
            Body::Stats(p) => serde_json::to_value(p),
            Body::Committed(p) => serde_json::to_value(p),
            Body::Completed(p) => serde_json::to_value(p),
        }
        // Serializing plain structs of strings and numbers cannot fail.
        .unwrap_or(serde_json::Value::Null);
        WireEnvelope {
            schema: SCHEMA.to_string(),
            kind: self.body.kind().to_string(),
            event_id: self.event_id.hyphenated().to_string(),
            node_id: self.node_id.clone(),
            seq: self.seq,
            sent_at: self
                .sent_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            token: self.token.clone(),
            key_id: self.key_id.clone(),
            payload,
        }
    }

    /// The JSON bytes published on the wire: [`WireEnvelope`]'s fields, the payload serialized
    /// straight from its type (no `serde_json::Value` tree in between, as [`Envelope::to_wire`]
    /// builds).
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(untagged)]
        enum PayloadRef<'a> {
            Registered(&'a RunInfo),
            Stats(&'a StatsPayload),
            Committed(&'a CommitPayload),
            Completed(&'a CompletedPayload),
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct WireRef<'a> {
            schema: &'a str,
            kind: &'a str,
            event_id: String,
            node_id: &'a str,
            seq: u64,
            sent_at: String,
            token: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            key_id: Option<&'a str>,
            payload: PayloadRef<'a>,
        }
        let wire = WireRef {
            schema: SCHEMA,
            kind: self.body.kind(),
            event_id: self.event_id.hyphenated().to_string(),
            node_id: &self.node_id,
            seq: self.seq,
            sent_at: self
                .sent_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            token: &self.token,
            key_id: self.key_id.as_deref(),
            payload: match &self.body {
                Body::Registered(p) => PayloadRef::Registered(p),
                Body::Stats(p) => PayloadRef::Stats(p),
                Body::Committed(p) => PayloadRef::Committed(p),
                Body::Completed(p) => PayloadRef::Completed(p),
            },
        };
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Parses and validates a message body from the wire.
    ///
    /// A valid message takes the direct way: its payload is deserialized straight from its JSON
    /// text into its type, without a `serde_json::Value` tree in between (half the writer's
    /// parsing time for a stats message). Anything the direct way refuses takes the checked way
    /// ([`WireEnvelope`], then `TryFrom`), whose errors name the offending field: both accept and
    /// refuse the same messages, and the errors are the checked way's.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        if let Some(env) = Self::from_json_direct(bytes) {
            return Ok(env);
        }
        let wire: WireEnvelope = serde_json::from_slice(bytes)
            .map_err(|e| ValidationError::new("$", format!("not a loadtest envelope: {e}")))?;
        Envelope::try_from(wire)
    }

    /// The direct way of [`Envelope::from_json`]; `None` when anything is wrong.
    fn from_json_direct(bytes: &[u8]) -> Option<Self> {
        let mut d: Direct<'_> = serde_json::from_slice(bytes).ok()?;
        let kind = d.kind.take()?;
        let body = match (d.parsed.take(), d.text) {
            (Some(body), _) => body?,
            (None, Some(text)) => {
                let mut de = serde_json::Deserializer::from_str(text.get());
                payload_of_kind(&kind, &mut de).ok()??
            }
            (None, None) => return None,
        };
        match &body {
            Body::Stats(p) => p.validate("payload").ok()?,
            Body::Committed(p) => {
                p.stats.validate("payload.stats").ok()?;
                for (i, t) in p.thresholds.iter().enumerate() {
                    t.validate(&format!("payload.thresholds[{i}]")).ok()?;
                }
            }
            Body::Registered(_) | Body::Completed(_) => {}
        }
        let head = WireEnvelope {
            schema: d.schema?,
            kind,
            event_id: d.event_id?,
            node_id: d.node_id.unwrap_or_default(),
            seq: d.seq.unwrap_or_default(),
            sent_at: d.sent_at?,
            token: d.token.unwrap_or_default(),
            key_id: d.key_id.flatten(),
            payload: serde_json::Value::Null,
        };
        let (event_id, sent_at) = check_head(&head).ok()?;
        Some(Envelope {
            event_id,
            node_id: head.node_id,
            seq: head.seq,
            sent_at,
            token: head.token,
            key_id: head.key_id,
            body,
        })
    }
}

/// [`WireEnvelope`] as [`Envelope::from_json`]'s direct way reads it, in one pass: the payload
/// is deserialized straight into its type when `kind` comes before it (as [`Envelope::to_json`]
/// writes it), and kept as JSON text to parse afterwards otherwise. A field given twice is an
/// error (the checked way then reports the message).
#[derive(Default)]
struct Direct<'a> {
    schema: Option<String>,
    kind: Option<String>,
    event_id: Option<String>,
    node_id: Option<String>,
    seq: Option<u64>,
    sent_at: Option<String>,
    token: Option<String>,
    key_id: Option<Option<String>>,
    /// The payload parsed (`None` for an unknown kind), when the kind came before it.
    parsed: Option<Option<Body>>,
    /// The payload's text, when it came before the kind.
    text: Option<&'a serde_json::value::RawValue>,
}

/// `d` deserialized as the payload of `kind`; `None` (the value skipped) for an unknown kind.
fn payload_of_kind<'de, D: serde::Deserializer<'de>>(
    kind: &str,
    d: D,
) -> Result<Option<Body>, D::Error> {
    Ok(Some(match kind {
        "registered" => Body::Registered(RunInfo::deserialize(d)?),
        "stats" => Body::Stats(StatsPayload::deserialize(d)?),
        "committed" => Body::Committed(CommitPayload::deserialize(d)?),
        "completed" => Body::Completed(CompletedPayload::deserialize(d)?),
        _ => {
            serde::de::IgnoredAny::deserialize(d)?;
            return Ok(None);
        }
    }))
}

impl<'de> Deserialize<'de> for Direct<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{DeserializeSeed, Error, MapAccess, Visitor};

        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "camelCase")]
        enum Field {
            Schema,
            Kind,
            EventId,
            NodeId,
            Seq,
            SentAt,
            Token,
            KeyId,
            Payload,
            #[serde(other)]
            Other,
        }

        /// The payload, by the kind read before it.
        struct OfKind<'k>(&'k str);
        impl<'de> DeserializeSeed<'de> for OfKind<'_> {
            type Value = Option<Body>;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                payload_of_kind(self.0, d)
            }
        }

        /// Sets `slot` once; a second value is an error.
        fn once<T, E: Error>(slot: &mut Option<T>, v: T, name: &'static str) -> Result<(), E> {
            if slot.replace(v).is_some() {
                return Err(E::duplicate_field(name));
            }
            Ok(())
        }

        struct DirectVisitor;
        impl<'de> Visitor<'de> for DirectVisitor {
            type Value = Direct<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a loadtest envelope")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Direct<'de>, A::Error> {
                let mut d = Direct::default();
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Schema => once(&mut d.schema, map.next_value()?, "schema")?,
                        Field::Kind => once(&mut d.kind, map.next_value()?, "kind")?,
                        Field::EventId => once(&mut d.event_id, map.next_value()?, "eventId")?,
                        Field::NodeId => once(&mut d.node_id, map.next_value()?, "nodeId")?,
                        Field::Seq => once(&mut d.seq, map.next_value()?, "seq")?,
                        Field::SentAt => once(&mut d.sent_at, map.next_value()?, "sentAt")?,
                        Field::Token => once(&mut d.token, map.next_value()?, "token")?,
                        Field::KeyId => once(&mut d.key_id, map.next_value()?, "keyId")?,
                        Field::Payload if d.parsed.is_some() || d.text.is_some() => {
                            return Err(A::Error::duplicate_field("payload"));
                        }
                        Field::Payload => match d.kind.as_deref() {
                            Some(kind) => d.parsed = Some(map.next_value_seed(OfKind(kind))?),
                            None => d.text = Some(map.next_value()?),
                        },
                        Field::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(d)
            }
        }
        d.deserialize_map(DirectVisitor)
    }
}

/// The envelope's rules apart from its payload: schema, run id, send time, node id and key id.
fn check_head(w: &WireEnvelope) -> Result<(Uuid, DateTime<Utc>), ValidationError> {
    if w.schema != SCHEMA {
        return Err(ValidationError::new(
            "schema",
            format!("unsupported schema {:?}, expected {SCHEMA:?}", w.schema),
        ));
    }
    let event_id = Uuid::parse_str(&w.event_id)
        .map_err(|e| ValidationError::new("eventId", format!("not a uuid: {e}")))?;
    let sent_at = DateTime::parse_from_rfc3339(&w.sent_at)
        .map_err(|e| ValidationError::new("sentAt", format!("not an RFC 3339 timestamp: {e}")))?
        .with_timezone(&Utc);
    if w.node_id.chars().count() > MAX_NODE_ID_LEN {
        return Err(ValidationError::new(
            "nodeId",
            format!("longer than {MAX_NODE_ID_LEN} characters"),
        ));
    }
    if let Some(k) = &w.key_id {
        if k.is_empty() || k.len() > 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ValidationError::new(
                "keyId",
                "not a key id (1 to 64 hexadecimal digits)",
            ));
        }
    }
    Ok((event_id, sent_at))
}

fn payload<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "payload".to_string()
        } else {
            format!("payload.{path}")
        };
        ValidationError::new(field, e.inner().to_string())
    })
}

impl TryFrom<WireEnvelope> for Envelope {
    type Error = ValidationError;

    fn try_from(w: WireEnvelope) -> Result<Self, Self::Error> {
        let (event_id, sent_at) = check_head(&w)?;
        let body = match w.kind.as_str() {
            "registered" => Body::Registered(payload(w.payload)?),
            "stats" => {
                let p: StatsPayload = payload(w.payload)?;
                p.validate("payload")?;
                Body::Stats(p)
            }
            "committed" => {
                let p: CommitPayload = payload(w.payload)?;
                p.stats.validate("payload.stats")?;
                for (i, t) in p.thresholds.iter().enumerate() {
                    t.validate(&format!("payload.thresholds[{i}]"))?;
                }
                Body::Committed(p)
            }
            "completed" => Body::Completed(payload(w.payload)?),
            other => {
                return Err(ValidationError::new(
                    "kind",
                    format!("unknown kind {other:?}"),
                ));
            }
        };
        Ok(Envelope {
            event_id,
            node_id: w.node_id,
            seq: w.seq,
            sent_at,
            token: w.token,
            key_id: w.key_id,
            body,
        })
    }
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;
