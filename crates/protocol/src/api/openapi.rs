//! The limits of the API's bodies in the OpenAPI document.
//!
//! utoipa's schema attributes (`max_length = 255`) take only literals, so the limits are not
//! written there: [`Limits`] (a `utoipa::Modify`) sets them on the generated schemas from the
//! same constants the API validates with, so the document and the validation cannot drift.

use utoipa::openapi::schema::Schema;
use utoipa::openapi::{OpenApi, RefOr};

use super::{
    MAX_ENTRIES, MAX_EXPECTED_NODES, MAX_HOST_LEN, MAX_METHOD_LEN, MAX_METRIC_LEN, MAX_MODE_LEN,
    MAX_NAME_LEN, MAX_NODE_ID_LEN, MAX_RUN_KEY_LEN, MAX_TARGET_HOST_LEN, MAX_THRESHOLDS,
    MAX_THRESHOLD_LEN, MAX_TOOL_LEN,
};

/// One constraint on a property.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// `maxLength` of a string.
    MaxLength(usize),
    /// `minLength` of a string.
    MinLength(usize),
    /// `maxItems` of a list.
    MaxItems(usize),
    /// `maximum` of an integer.
    Maximum(u64),
}

/// Every limit: (schema, property, constraint).
pub const LIMITS: &[(&str, &str, Limit)] = &[
    ("RegisterRequest", "host", Limit::MaxLength(MAX_HOST_LEN)),
    ("RegisterRequest", "runKey", Limit::MinLength(1)),
    (
        "RegisterRequest",
        "runKey",
        Limit::MaxLength(MAX_RUN_KEY_LEN),
    ),
    (
        "RegisterRequest",
        "nodeId",
        Limit::MaxLength(MAX_NODE_ID_LEN),
    ),
    ("RegisterRequest", "tool", Limit::MaxLength(MAX_TOOL_LEN)),
    (
        "RegisterRequest",
        "expectedNodes",
        Limit::Maximum(MAX_EXPECTED_NODES),
    ),
    (
        "RegisterTags",
        "targetHost",
        Limit::MaxLength(MAX_TARGET_HOST_LEN),
    ),
    ("RegisterTags", "mode", Limit::MaxLength(MAX_MODE_LEN)),
    ("StatsRequest", "nodeId", Limit::MaxLength(MAX_NODE_ID_LEN)),
    ("StatsRequest", "entries", Limit::MaxItems(MAX_ENTRIES)),
    ("StatsRequest", "errors", Limit::MaxItems(MAX_ENTRIES)),
    ("CommitRequest", "host", Limit::MaxLength(MAX_HOST_LEN)),
    ("CommitRequest", "nodeId", Limit::MaxLength(MAX_NODE_ID_LEN)),
    ("CommitRequest", "errors", Limit::MaxItems(MAX_ENTRIES)),
    (
        "CommitRequest",
        "thresholds",
        Limit::MaxItems(MAX_THRESHOLDS),
    ),
    ("CommitFields", "requestStats", Limit::MaxItems(MAX_ENTRIES)),
    ("StatsPayload", "entries", Limit::MaxItems(MAX_ENTRIES)),
    ("StatsPayload", "errors", Limit::MaxItems(MAX_ENTRIES)),
    ("StatsEntry", "name", Limit::MaxLength(MAX_NAME_LEN)),
    ("StatsEntry", "method", Limit::MaxLength(MAX_METHOD_LEN)),
    ("ErrorEntry", "name", Limit::MaxLength(MAX_NAME_LEN)),
    (
        "ThresholdVerdict",
        "threshold",
        Limit::MaxLength(MAX_THRESHOLD_LEN),
    ),
    (
        "ThresholdVerdict",
        "metric",
        Limit::MaxLength(MAX_METRIC_LEN),
    ),
    ("ThresholdVerdict", "name", Limit::MaxLength(MAX_NAME_LEN)),
];

/// Sets [`LIMITS`] on the document's component schemas (a `utoipa::Modify`, for
/// `#[openapi(modifiers(&Limits))]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits;

impl utoipa::Modify for Limits {
    fn modify(&self, openapi: &mut OpenApi) {
        apply(openapi);
    }
}

/// Sets [`LIMITS`] on `openapi`; returns the (schema, property) pairs it did not find, which
/// a test of the document expects to be none.
pub fn apply(openapi: &mut OpenApi) -> Vec<(&'static str, &'static str)> {
    let mut missing = Vec::new();
    for &(schema, property, limit) in LIMITS {
        let target = openapi
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut(schema))
            .and_then(|s| match s {
                RefOr::T(Schema::Object(o)) => o.properties.get_mut(property),
                _ => None,
            });
        let applied = match target {
            Some(RefOr::T(s)) => set(s, limit),
            _ => false,
        };
        if !applied {
            missing.push((schema, property));
        }
    }
    missing
}

fn set(schema: &mut Schema, limit: Limit) -> bool {
    match (schema, limit) {
        (Schema::Object(o), Limit::MaxLength(n)) => o.max_length = Some(n),
        (Schema::Object(o), Limit::MinLength(n)) => o.min_length = Some(n),
        (Schema::Object(o), Limit::Maximum(n)) => {
            o.maximum = Some(utoipa::Number::UInt(
                usize::try_from(n).unwrap_or(usize::MAX),
            ))
        }
        (Schema::Array(a), Limit::MaxItems(n)) => a.max_items = Some(n),
        _ => return false,
    }
    true
}
