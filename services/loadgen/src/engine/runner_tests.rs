//! Tests of [`super`].

use reqwest::Url;

use super::*;

#[test]
fn tickets_are_exact() {
    let t = Tickets {
        next: AtomicU64::new(0),
        limit: Some(3),
    };
    assert_eq!(t.take(), Some(0));
    assert_eq!(t.take(), Some(1));
    assert_eq!(t.take(), Some(2));
    assert_eq!(t.take(), None);
    assert_eq!(t.take(), None);
}

#[tokio::test]
async fn transport_errors_are_failures() {
    // A port that was just bound and released: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let host = Url::parse(&format!("http://{addr}")).expect("url");
    let mut scenario = Scenario::from_paths(&["/".into()]).expect("scenario");
    scenario.resolve(&host).expect("resolve");
    let plan = LoadPlan {
        scenario: Arc::new(scenario),
        users: 1,
        spawn_rate: 1.0,
        iterations: Some(1),
        arrival_rate: None,
        timeout: Duration::from_secs(2),
        threads: 1,
        connector: Arc::new(Connector::plain()),
    };
    let client = http_client(&plan).expect("client");
    let o = request_from(&client, &plan.scenario.requests[0], Instant::now()).await;
    assert_eq!(o.error.as_deref(), Some("connection error"));
}
