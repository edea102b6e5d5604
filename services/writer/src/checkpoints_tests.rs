//! Tests of [`super`].

use super::*;

/// Serializes a record as [`StreamMessage::Run`] without cloning it: one record per message, as
/// writers wrote them before [`StreamMessage::Runs`] (still read on restore).
struct RunRef<'a>(&'a Record);

impl Serialize for RunRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Tagged<'a> {
            kind: &'static str,
            #[serde(flatten)]
            record: &'a Record,
        }
        Tagged {
            kind: "run",
            record: self.0,
        }
        .serialize(s)
    }
}

#[test]
fn messages_are_tagged_json() {
    let cycle = StreamMessage::Cycle {
        at: Utc::now(),
        low_water: Utc::now(),
    };
    let v: serde_json::Value =
        serde_json::from_slice(&serde_json::to_vec(&cycle).expect("json")).expect("parse");
    assert_eq!(v["kind"], "cycle");
    assert!(v["lowWater"].is_string());
    let r = Record {
        event_id: Uuid::nil(),
        at: Utc::now(),
        state: None,
    };
    let bytes = serde_json::to_vec(&RunRef(&r)).expect("json");
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("parse");
    assert_eq!(v["kind"], "run");
    assert!(v["state"].is_null(), "a tombstone: {v}");
    match serde_json::from_slice::<StreamMessage>(&bytes).expect("parse") {
        StreamMessage::Run(back) => assert_eq!(back.event_id, Uuid::nil()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn records_go_many_to_a_message_in_order() {
    let records: Vec<Record> = (0..10u128)
        .map(|i| Record {
            event_id: Uuid::from_u128(i),
            at: Utc::now(),
            state: None,
        })
        .collect();
    let one = serde_json::to_vec(&records[0]).expect("json").len();
    // Closed once 3 records are in.
    let mut runs = RunsMessages::with_max_bytes(3 * one);
    for r in &records {
        runs.push(r).expect("push");
    }
    let messages = runs.finish().expect("finish");
    assert_eq!(messages.len(), 4);
    let mut back = Vec::new();
    for m in &messages {
        let mut json = Vec::new();
        flate2::read::DeflateDecoder::new(&m[..])
            .read_to_end(&mut json)
            .expect("inflate");
        match serde_json::from_slice::<StreamMessage>(&json).expect("parse") {
            StreamMessage::Runs { records } => back.extend(records.iter().map(|r| r.event_id)),
            other => panic!("{other:?}"),
        }
    }
    let ids: Vec<Uuid> = records.iter().map(|r| r.event_id).collect();
    assert_eq!(back, ids);
    assert!(RunsMessages::new().finish().expect("finish").is_empty());
}

#[test]
fn deflate_round_trips_and_shrinks_repetitive_json() {
    let json = serde_json::to_vec(&vec![r#"{"GET":"/items","response_times":{"10":3}}"#; 200])
        .expect("json");
    let small = deflate(&json).expect("deflate");
    assert!(
        small.len() * 10 < json.len(),
        "{} → {}",
        json.len(),
        small.len()
    );
    let mut back = Vec::new();
    flate2::read::DeflateDecoder::new(&small[..])
        .read_to_end(&mut back)
        .expect("inflate");
    assert_eq!(back, json);
}

#[test]
fn a_cycle_message_is_deflated_json_with_the_low_water_mark() {
    let at = Utc::now();
    let low_water = at - chrono::Duration::seconds(60);
    let body = cycle_message(at, low_water).expect("cycle");
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(&body[..])
        .read_to_end(&mut json)
        .expect("inflate");
    let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
    assert_eq!(v["kind"], "cycle");
    match serde_json::from_slice::<StreamMessage>(&json).expect("parse") {
        StreamMessage::Cycle {
            at: a,
            low_water: lw,
        } => assert_eq!((a, lw), (at, low_water)),
        other => panic!("{other:?}"),
    }
}
