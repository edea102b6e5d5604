//! Tests of [`super`].

use super::*;

/// A `completed` message of a writer from before the optional fields parses, with them
/// unknown; a new one round-trips.
#[test]
fn completed_payload_is_backward_compatible() {
    let old = r#"{"schema":"loadtest.v1","kind":"completed","eventId":"0123456789ab4def8123456789abcdef","nodeId":"writer","seq":0,"sentAt":"2026-11-29T08:00:40Z","payload":{"status":"committed","durationS":40.0,"requests":33,"failures":4,"nodes":1}}"#;
    let env = Envelope::from_json(old.as_bytes()).expect("an old completed message parses");
    let Body::Completed(done) = &env.body else {
        panic!("completed: {env:?}")
    };
    assert_eq!((done.requests, done.failures, done.nodes), (33, 4, 1));
    assert_eq!(done.target_host, None);
    assert_eq!(done.response_time_ms, None);
    assert!(done.thresholds.is_empty());
    // Unknown fields are not written, so the JSON stays what old readers know.
    let json: serde_json::Value = serde_json::from_slice(&env.to_json()).expect("json");
    assert_eq!(
        json["payload"],
        serde_json::json!({"status":"committed","durationS":40.0,"requests":33,"failures":4,"nodes":1})
    );

    let mut full = done.clone();
    full.target_host = Some("http://t".into());
    full.started_at = Some(env.sent_at);
    full.response_time_ms = Some(Percentiles {
        p50: 1.5,
        p95: 9.0,
        p99: 12.25,
    });
    full.thresholds = vec![NodeVerdict {
        node_id: "pod-3".into(),
        verdict: ThresholdVerdict {
            threshold: "p95<300ms".into(),
            metric: None,
            name: None,
            op: None,
            passed: false,
            actual: Some(412.0),
            limit: Some(300.0),
        },
    }];
    let v = serde_json::to_value(&full).expect("json");
    assert_eq!(v["targetHost"], "http://t");
    assert_eq!(v["responseTimeMs"]["p99"], 12.25);
    assert_eq!(
        v["thresholds"][0],
        serde_json::json!({"nodeId":"pod-3","threshold":"p95<300ms","passed":false,"actual":412.0,"limit":300.0})
    );
    let back: CompletedPayload = serde_json::from_value(v).expect("round trip");
    assert_eq!(back, full);
}

const FIXTURE: &str = include_str!("../../../fixtures/stats-message.json");

#[test]
fn parses_the_shared_stats_fixture() {
    let env = Envelope::from_json(FIXTURE.as_bytes()).expect("fixture parses");
    assert_eq!(env.node_id, "loadgen-1");
    assert_eq!(env.seq, 3);
    let Body::Stats(p) = &env.body else {
        panic!("stats")
    };
    assert_eq!(p.total.num_requests, 42);
    assert_eq!(p.entries[0].response_times.get(8), Some(20));
    // Round trip through the wire form.
    let again = Envelope::from_json(&env.to_json()).expect("round trip");
    assert_eq!(again, env);
}

/// The direct way and the checked way give the same envelope, for every kind.
#[test]
fn the_direct_way_parses_as_the_checked_way() {
    let checked = |bytes: &[u8]| {
        let wire: WireEnvelope = serde_json::from_slice(bytes).expect("wire");
        Envelope::try_from(wire).expect("valid")
    };
    let stats = FIXTURE.as_bytes();
    let direct = Envelope::from_json_direct(stats).expect("direct");
    assert_eq!(direct, checked(stats));
    // The bytes to_json writes are the wire form's JSON.
    let written: serde_json::Value = serde_json::from_slice(&direct.to_json()).expect("json");
    assert_eq!(
        written,
        serde_json::to_value(direct.to_wire()).expect("value")
    );
    let commit = Envelope::new(
        Uuid::new_v4(),
        "n",
        4,
        "t".into(),
        Body::Committed(CommitPayload {
            host: "h".into(),
            stats: match direct.body {
                Body::Stats(p) => p,
                _ => panic!("stats"),
            },
            thresholds: vec![ThresholdVerdict {
                threshold: "p95<300ms".into(),
                metric: Some("p95".into()),
                name: None,
                op: None,
                limit: Some(300.0),
                actual: Some(40.0),
                passed: true,
            }],
        }),
    )
    .with_key_id("abc123")
    .to_json();
    assert_eq!(
        Envelope::from_json_direct(&commit).expect("direct"),
        checked(&commit)
    );
    // The payload before the kind is read in a second pass, to the same envelope.
    let written = String::from_utf8(Envelope::from_json_direct(stats).expect("direct").to_json())
        .expect("utf-8");
    let (head, payload) = written.split_once(",\"payload\":").expect("payload last");
    let payload_first = format!(
        "{{\"payload\":{},{}}}",
        payload.strip_suffix('}').expect("object"),
        head.strip_prefix('{').expect("object")
    );
    assert!(payload_first.starts_with("{\"payload\":{"));
    assert_eq!(
        Envelope::from_json_direct(payload_first.as_bytes()).expect("payload first"),
        checked(stats)
    );
    // A field given twice is left to the checked way.
    let twice = written.replacen("\"seq\":", "\"seq\":1,\"seq\":", 1);
    assert!(Envelope::from_json_direct(twice.as_bytes()).is_none());
    // A payload the direct way refuses is refused by the checked way, naming the field.
    let mut v: serde_json::Value = serde_json::from_str(FIXTURE).expect("json");
    v["payload"]["total"]["num_requests"] = "many".into();
    let bad = v.to_string();
    assert!(Envelope::from_json_direct(bad.as_bytes()).is_none());
    assert_eq!(
        Envelope::from_json(bad.as_bytes()).expect_err("bad").field,
        "payload.total.num_requests"
    );
}

#[test]
fn rejects_unknown_schema_and_kind_naming_the_field() {
    let mut v: serde_json::Value = serde_json::from_str(FIXTURE).expect("json");
    v["schema"] = "loadtest.v0".into();
    let e = Envelope::from_json(v.to_string().as_bytes()).expect_err("schema");
    assert_eq!(e.field, "schema");
    v["schema"] = SCHEMA.into();
    v["kind"] = "bogus".into();
    assert_eq!(
        Envelope::from_json(v.to_string().as_bytes())
            .expect_err("kind")
            .field,
        "kind"
    );
    v["kind"] = "stats".into();
    v["payload"]["entries"][0]["num_requests"] = "many".into();
    let e = Envelope::from_json(v.to_string().as_bytes()).expect_err("type");
    assert_eq!(e.field, "payload.entries[0].num_requests");
    assert!(Envelope::from_json(b"{not json").is_err());
}

#[test]
fn key_id_travels_only_when_set_and_must_be_hex() {
    let env = Envelope::from_json(FIXTURE.as_bytes()).expect("fixture parses");
    assert_eq!(env.key_id, None);
    assert!(!String::from_utf8_lossy(&env.to_json()).contains("keyId"));
    let keyed = env.with_key_id("0123456789abcdef");
    let wire: serde_json::Value = serde_json::from_slice(&keyed.to_json()).expect("json");
    assert_eq!(wire["keyId"], "0123456789abcdef");
    let again = Envelope::from_json(&keyed.to_json()).expect("round trip");
    assert_eq!(again.key_id.as_deref(), Some("0123456789abcdef"));
    let mut v = wire;
    v["keyId"] = "not hex".into();
    let e = Envelope::from_json(v.to_string().as_bytes()).expect_err("key id");
    assert_eq!(e.field, "keyId");
}
