//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` attributes and the schemas below.
//!
//! The handlers read raw bytes (so every rejection is our problem+json), so the request bodies
//! are described by the documentation-only types in this module.

use protocol::{ErrorEntry, RunningEvent, RunningSet, StatsEntry, StatsPayload};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::Problem;
use crate::routes::RegisterResponse;

/// Register body (the original Consumer's, plus optional additions).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBody {
    /// Start time, RFC 3339 (`2026-11-29T08:00:00Z`).
    #[schema(format = DateTime)]
    pub started_at: String,
    /// The registering machine (at most 255 characters).
    #[schema(max_length = 255)]
    pub host: Option<String>,
    /// Run parameters and tags.
    pub measurement: RegisterMeasurementBody,
    /// Idempotency key: the same key with the same API key returns the same uuid and token.
    #[schema(min_length = 1, max_length = 200)]
    pub run_key: Option<String>,
    /// The registering node (default `default`; cluster nodes send their own).
    #[schema(max_length = 200)]
    pub node_id: Option<String>,
    /// `loadgen`, `locust`, …
    #[schema(max_length = 64)]
    pub tool: Option<String>,
    /// Nodes expected to join (cluster mode).
    #[schema(minimum = 0, maximum = 4294967295u32)]
    pub expected_nodes: Option<u32>,
}

/// `measurement` of a register body.
#[derive(Serialize, ToSchema)]
pub struct RegisterMeasurementBody {
    /// Numeric parameters.
    pub fields: RegisterFieldsBody,
    /// Tags.
    pub tags: RegisterTagsBody,
}

/// `measurement.fields` of a register body.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterFieldsBody {
    /// Users planned.
    #[schema(minimum = 0)]
    pub clients: u64,
    /// Spawn rate, users/s.
    #[schema(minimum = 0.0)]
    pub hatch_rate: Option<f64>,
    /// Planned requests (0 for a time-bound run).
    #[schema(minimum = 0)]
    pub requests: Option<u64>,
}

/// `measurement.tags` of a register body.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterTagsBody {
    /// The system under test (at most 1,000 characters).
    #[schema(max_length = 1000)]
    pub target_host: Option<String>,
    /// `single` or `cluster` (at most 64 characters).
    #[schema(max_length = 64)]
    pub mode: Option<String>,
}

/// Stats body: a node's cumulative stats (the `stats` payload) plus its id and sequence number.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsBody {
    /// The sending node (default `default`).
    #[schema(max_length = 200)]
    pub node_id: Option<String>,
    /// Sequence number; a higher one supersedes a lower one from the same node.
    #[schema(minimum = 0)]
    pub seq: Option<u64>,
    /// Users running on the node.
    #[schema(minimum = 0)]
    pub user_count: Option<u64>,
    /// Runner state (`spawning`, `running`, `stopped`).
    pub state: Option<String>,
    /// Per-endpoint entries.
    #[schema(max_items = 10000)]
    pub entries: Option<Vec<StatsEntry>>,
    /// The aggregated row.
    pub total: StatsEntry,
    /// Errors.
    #[schema(max_items = 10000)]
    pub errors: Option<Vec<ErrorEntry>>,
}

/// Commit body (the original Consumer's, plus optional additions).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitBody {
    /// Start time, RFC 3339.
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// The run's uuid from register.
    pub uuid: uuid::Uuid,
    /// The committing machine.
    #[schema(max_length = 255)]
    pub host: Option<String>,
    /// The committing node (default `default`; cluster nodes send their own).
    #[schema(max_length = 200)]
    pub node_id: Option<String>,
    /// Sequence number.
    #[schema(minimum = 0)]
    pub seq: Option<u64>,
    /// Users at the end.
    #[schema(minimum = 0)]
    pub user_count: Option<u64>,
    /// Errors.
    #[schema(max_items = 10000)]
    pub errors: Option<Vec<ErrorEntry>>,
    /// Final stats.
    pub measurement: CommitMeasurementBody,
    /// The load generator's threshold verdicts, written as `loadtest_threshold` points.
    #[schema(max_items = 100)]
    pub thresholds: Option<Vec<protocol::ThresholdVerdict>>,
}

/// `measurement` of a commit body.
#[derive(Serialize, ToSchema)]
pub struct CommitMeasurementBody {
    /// The final stats.
    pub fields: CommitFieldsBody,
    /// Tags (`hostname`, `mode`), informational.
    pub tags: Option<serde_json::Value>,
}

/// `measurement.fields` of a commit body.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitFieldsBody {
    /// Locust `StatsEntry.serialize()` objects (or Locust's `/stats/requests` JSON object).
    #[schema(max_items = 10000)]
    pub request_stats: Vec<StatsEntry>,
}

/// 202 body of stats and commit.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// The run.
    pub uuid: uuid::Uuid,
    /// Always `accepted`.
    pub status: String,
}

/// Health body.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key, as `Authorization: Bearer <key>`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKeyHeader",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "eventToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The event token returned by register."))
                    .build(),
            ),
        );
    }
}

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "loadtest API",
        description = "Registers load-test runs, takes cumulative stats and commits from load generators, and publishes them to RabbitMQ with publisher confirms. Errors are application/problem+json naming the offending field."
    ),
    paths(
        crate::routes::register,
        crate::routes::stats,
        crate::routes::commit,
        crate::routes::is_running,
        crate::routes::is_running_v01,
        crate::routes::healthz,
        crate::routes::readyz,
        crate::routes::metrics,
        crate::routes::openapi_json,
    ),
    components(schemas(
        RegisterBody, RegisterMeasurementBody, RegisterFieldsBody, RegisterTagsBody, RegisterResponse,
        StatsBody, StatsEntry, ErrorEntry, StatsPayload, CommitBody, CommitMeasurementBody,
        CommitFieldsBody, Accepted, Health, Problem, RunningSet, RunningEvent, protocol::ThresholdVerdict
    )),
    modifiers(&Security)
)]
pub struct ApiDoc;

/// An RFC 3339 timestamp as the API parses it: a calendar-valid date in InfluxDB's range (years
/// 1680 to 2261 here; February stops at 28 because a pattern cannot know leap years, though the
/// server takes a real 29th).
pub const TIMESTAMP_PATTERN: &str = r"^(?:16[89][0-9]|1[789][0-9]{2}|20[0-9]{2}|21[0-9]{2}|22[0-5][0-9]|226[01])-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$";

/// The served document: [`ApiDoc`] plus the constraints utoipa cannot express (histogram keys
/// are whole milliseconds; timestamps follow [`TIMESTAMP_PATTERN`]).
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let schemas = &mut doc["components"]["schemas"];
    if let Some(rt) = schemas
        .pointer_mut("/StatsEntry/properties/response_times")
        .and_then(serde_json::Value::as_object_mut)
    {
        rt.insert(
            "propertyNames".into(),
            serde_json::json!({"type": "string", "pattern": "^[0-9]{1,15}(\\.0{1,3})?$"}),
        );
    }
    for body in ["RegisterBody", "CommitBody"] {
        if let Some(ts) = schemas
            .pointer_mut(&format!("/{body}/properties/startedAt"))
            .and_then(serde_json::Value::as_object_mut)
        {
            ts.insert("pattern".into(), TIMESTAMP_PATTERN.into());
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_covers_every_route_with_its_errors() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        for path in [
            "/apiv0.1/events/register",
            "/apiv0.1/events/{uuid}/stats",
            "/apiv0.1/events/commit",
            "/events/isrunning",
            "/apiv0.1/events/isrunning",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        let register = &doc["paths"]["/apiv0.1/events/register"]["post"]["responses"];
        for status in ["201", "400", "401", "413", "503"] {
            assert!(register[status].is_object(), "register {status}");
        }
        assert!(doc
            .pointer(
                "/components/schemas/StatsEntry/properties/response_times/propertyNames/pattern"
            )
            .is_some());
    }
}
