//! InfluxDB points as values: what the lifecycle returns and its tests inspect. Encoding them
//! to line protocol is [`crate::encode`]'s job, done at the edge.

/// A field value. Integer fields are always written as integers (`12i`) and floats always as
/// floats, so a field's type never changes between points (InfluxDB rejects such writes).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// Signed integer (`…i`).
    Int(i64),
    /// Float; left out when not finite.
    Float(f64),
    /// String (quoted, escaped).
    Str(String),
}

/// One point: measurement, tags, fields and a timestamp in Unix nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Measurement name (`loadtest_snapshot`, …).
    pub measurement: &'static str,
    /// Tags in the order they are written.
    pub tags: Vec<(&'static str, String)>,
    /// Fields in the order they are written.
    pub fields: Vec<(&'static str, FieldValue)>,
    /// Unix nanoseconds.
    pub timestamp: i64,
}

impl Point {
    /// A point with no tags and fields yet.
    pub fn new(measurement: &'static str, timestamp: i64) -> Self {
        Self {
            measurement,
            tags: Vec::new(),
            fields: Vec::new(),
            timestamp,
        }
    }

    /// Adds a tag.
    pub fn tag(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.tags.push((key, value.into()));
        self
    }

    /// Adds an integer field. Counts above `i64::MAX` saturate.
    pub fn int(mut self, key: &'static str, value: impl TryInto<i64>) -> Self {
        self.fields
            .push((key, FieldValue::Int(value.try_into().unwrap_or(i64::MAX))));
        self
    }

    /// Adds a float field.
    pub fn float(mut self, key: &'static str, value: f64) -> Self {
        self.fields.push((key, FieldValue::Float(value)));
        self
    }

    /// Adds a string field.
    pub fn string(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((key, FieldValue::Str(value.into())));
        self
    }

    /// The value of tag `key`, if the point has it.
    pub fn tag_value(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of field `key`, if the point has it.
    pub fn field(&self, key: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}
