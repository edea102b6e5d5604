//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the handlers'
//! `#[utoipa::path]` attributes and the wire types of [`protocol::api`] (the same types the
//! handlers parse), with their limits set by [`protocol::api::openapi::Limits`].
//!
//! This module imports the handlers; they do not import it (it serves itself, through
//! [`openapi_json`]).

use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::api::openapi::Limits;
use protocol::api::{
    Accepted, CommitFields, CommitMeasurement, CommitRequest, Health, Problem, RegisterFields,
    RegisterMeasurement, RegisterRequest, RegisterResponse, RegisterTags, StatsRequest,
};
use protocol::{ErrorEntry, RunningEvent, RunningSet, StatsEntry, StatsPayload, ThresholdOp};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
        openapi_json,
    ),
    components(schemas(
        RegisterRequest, RegisterMeasurement, RegisterFields, RegisterTags, RegisterResponse,
        StatsRequest, StatsEntry, ErrorEntry, StatsPayload, CommitRequest, CommitMeasurement,
        CommitFields, Accepted, Health, Problem, RunningSet, RunningEvent, protocol::ThresholdVerdict,
        ThresholdOp
    )),
    modifiers(&Security, &Limits)
)]
#[derive(Debug)]
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
    for body in ["RegisterRequest", "CommitRequest"] {
        if let Some(ts) = schemas
            .pointer_mut(&format!("/{body}/properties/startedAt"))
            .and_then(serde_json::Value::as_object_mut)
        {
            ts.insert("pattern".into(), TIMESTAMP_PATTERN.into());
        }
    }
    doc
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI document", body = Object)))]
pub async fn openapi_json() -> Response {
    Json(document()).into_response()
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

    /// Every limit of `protocol::api` is in the document, with the value the API checks.
    #[test]
    fn every_limit_is_in_the_document() {
        let mut doc = ApiDoc::openapi();
        assert_eq!(protocol::api::openapi::apply(&mut doc), []);
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for (schema, property, limit) in protocol::api::openapi::LIMITS {
            use protocol::api::openapi::Limit;
            let p = &schemas[schema]["properties"][property];
            let (key, value) = match limit {
                Limit::MaxLength(n) => ("maxLength", *n as u64),
                Limit::MinLength(n) => ("minLength", *n as u64),
                Limit::MaxItems(n) => ("maxItems", *n as u64),
                Limit::Maximum(n) => ("maximum", *n),
            };
            assert_eq!(p[key], value, "{schema}.{property}: {p}");
        }
        assert_eq!(
            schemas["RegisterRequest"]["properties"]["host"]["maxLength"],
            protocol::api::MAX_HOST_LEN
        );
    }
}
