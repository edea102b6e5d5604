//! The API's bodies: the original Consumer's parse and round-trip, type errors keep the words
//! the API used to say, and the stats body carries a payload's fields side by side.

use super::*;

const REGISTER: &str = include_str!("../../../../fixtures/original-register.json");
const COMMIT: &str = include_str!("../../../../fixtures/original-commit.json");

fn commit(body: &str) -> Result<CommitRequest, String> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(value).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

#[test]
fn the_original_bodies_parse_and_round_trip() {
    let r: RegisterRequest = serde_json::from_str(REGISTER).expect("register");
    assert_eq!(r.measurement.fields.clients, 5);
    let again: RegisterRequest =
        serde_json::from_value(serde_json::to_value(&r).expect("json")).expect("again");
    assert_eq!(again, r);
    let body = COMMIT.replace(
        "REPLACE-WITH-UUID-FROM-REGISTER",
        "0b6f8d4e-2f7a-4c1e-9a55-3f1f2c7d9e10",
    );
    let c = commit(&body).expect("commit");
    let Some(RequestStats::Entries(entries)) = &c.measurement.fields.request_stats else {
        panic!("entries: {c:?}")
    };
    assert_eq!(entries[0].num_requests, 100);
    let tags = c.measurement.tags.clone().expect("tags");
    assert_eq!(tags.mode.as_deref(), Some("single"));
    let again = commit(&serde_json::to_string(&c).expect("json")).expect("again");
    assert_eq!(again, c);
}

#[test]
fn type_errors_keep_the_original_words() {
    let uuid = "0b6f8d4e-2f7a-4c1e-9a55-3f1f2c7d9e10";
    let base = serde_json::json!({"uuid": uuid, "measurement": {"fields": {"requestStats": []}}});
    let with = |key: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[key] = v;
        commit(&b.to_string()).expect_err(key)
    };
    assert_eq!(with("nodeId", 5.into()), "nodeId: must be a string");
    assert_eq!(with("host", true.into()), "host: must be a string");
    assert_eq!(
        with("seq", (-1).into()),
        "seq: must be a non-negative integer"
    );
    assert_eq!(
        with("userCount", 1.5.into()),
        "userCount: must be a non-negative integer"
    );
    assert_eq!(with("uuid", 7.into()), "uuid: must be a string");
    assert!(with("uuid", "nope".into()).starts_with("uuid: not a uuid: "));
    let shape = format!("measurement.fields.requestStats: {REQUEST_STATS_SHAPE}");
    let mut b = base.clone();
    b["measurement"]["fields"]["requestStats"] = serde_json::Value::Null;
    assert_eq!(commit(&b.to_string()).expect_err("null"), shape);
    b["measurement"]["fields"]["requestStats"] = serde_json::json!([{"name": 1}]);
    assert!(commit(&b.to_string())
        .expect_err("entry")
        .starts_with("measurement.fields.requestStats[0].name: "));
    // A measurement (or fields) that is not an object has no requestStats.
    for m in [serde_json::json!(5), serde_json::json!({"fields": [1, 2]})] {
        let mut b = base.clone();
        b["measurement"] = m;
        let c = commit(&b.to_string()).expect("parses");
        assert_eq!(c.measurement.fields.request_stats, None);
    }
    // Any tags at all.
    let mut b = base.clone();
    b["measurement"]["tags"] = serde_json::json!([1]);
    assert!(commit(&b.to_string()).is_ok());
}

#[test]
fn locust_web_stats_are_a_request_stats_shape() {
    let v = serde_json::json!({"stats": [{"method": "GET", "name": "/", "num_requests": 3}]});
    let r: RequestStats = serde_json::from_value(v).expect("web");
    assert!(matches!(r, RequestStats::Web(w) if w.stats[0].num_requests == 3));
}

#[test]
fn stats_request_flattens_the_payload() {
    let mut e = StatsEntry::new("GET", "/", 1.0);
    e.log(10.0, 3, false, 2.0);
    let payload = StatsPayload::from_entries(vec![e], vec![], 4, "running");
    let msg = StatsRequest::new(Some("n1".into()), Some(3), payload.clone());
    let v = serde_json::to_value(&msg).expect("json");
    assert_eq!(v["nodeId"], "n1");
    assert_eq!(v["seq"], 3);
    assert_eq!(v["userCount"], 4);
    assert_eq!(v["state"], "running");
    assert_eq!(v["total"]["name"], "Aggregated");
    assert_eq!(v["entries"][0]["response_times"]["10"], 1);
    let back: StatsRequest = serde_json::from_value(v).expect("round trip");
    assert_eq!(back, msg);
    assert_eq!(back.payload(), payload);
}

#[test]
fn problems_are_read_leniently() {
    let p: Problem = serde_json::from_str(r#"{"detail": "x"}"#).expect("partial");
    assert_eq!((p.kind.as_str(), p.detail.as_str()), ("about:blank", "x"));
    let accepted = serde_json::to_string(&Accepted::new(Uuid::nil())).expect("json");
    assert_eq!(
        accepted,
        r#"{"status":"accepted","uuid":"00000000-0000-0000-0000-000000000000"}"#
    );
}
