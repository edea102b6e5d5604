//! Tests of [`super`]: the policy driven as [`crate::leader`] drives it, with paused tokio time
//! and no broker or InfluxDB. [`Sim`] plays both: a broker that delivers up to the prefetch and
//! requeues what was not acked when the writer dies, a checkpoint stream that confirms after a
//! latency (or never), and an InfluxDB that takes a write after a latency (or is down). On every
//! ack it checks the rule the writer exists for, from the checkpoint records themselves, not from
//! what the policy says they cover: the delivery's effect is durable — carried by a confirmed
//! checkpoint record (or its run's tombstone) — or the delivery is superseded by a newer message
//! of the same node.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;

use chrono::{DateTime, Utc};
use lifecycle::{Batch, Lifecycle, LifecycleSettings, Record};
use protocol::{Body, CommitPayload, Envelope, RunInfo, StatsEntry, StatsPayload};
use secrecy::SecretString;
use serde_json::Value;
use tokio::time::{sleep_until, Duration, Instant};
use uuid::Uuid;

use super::*;
use crate::checkpoints::StreamMessage;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Register,
    Stats,
    Commit,
}

/// A message a load generator publishes (through the API): `requests` are the node's cumulative
/// requests (a tenth of them failed).
#[derive(Debug, Clone)]
struct Msg {
    run: Uuid,
    node: &'static str,
    seq: u64,
    kind: Kind,
    requests: u64,
}

fn register(run: Uuid, node: &'static str) -> Msg {
    Msg {
        run,
        node,
        seq: 0,
        kind: Kind::Register,
        requests: 0,
    }
}

fn stats(run: Uuid, node: &'static str, seq: u64, requests: u64) -> Msg {
    Msg {
        run,
        node,
        seq,
        kind: Kind::Stats,
        requests,
    }
}

fn commit(run: Uuid, node: &'static str, seq: u64, requests: u64) -> Msg {
    Msg {
        run,
        node,
        seq,
        kind: Kind::Commit,
        requests,
    }
}

fn run_id(i: u128) -> Uuid {
    Uuid::from_u128(0x0123_4567_89ab_4def_8123_0000_0000_0000 + i)
}

/// The wall clock at the start of every test: 0.5 s past a snapshot tick's time stamp.
fn wall_start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-29T08:00:00.5Z")
        .expect("timestamp")
        .with_timezone(&Utc)
}

/// Cumulative stats of `requests` to `GET /`, sent at `at`.
fn payload(requests: u64, at: DateTime<Utc>) -> StatsPayload {
    let start = wall_start().timestamp() as f64;
    let mut e = StatsEntry::new("GET", "/", start);
    for i in 0..requests {
        e.log(
            10.0 + (i % 50) as f64,
            100,
            i % 10 == 0,
            at.timestamp() as f64,
        );
    }
    StatsPayload::from_entries(vec![e], vec![], 5, "running")
}

fn info() -> RunInfo {
    RunInfo {
        started_at: wall_start(),
        host: "h".into(),
        clients: 5,
        hatch_rate: 1.0,
        requests: 0,
        target_host: "http://t".into(),
        mode: "distributed".into(),
        tool: "loadgen".into(),
        expected_nodes: None,
    }
}

/// The JSON of each checkpoint-stream message (inflated).
fn stream_messages(bodies: &[Vec<u8>]) -> Vec<StreamMessage> {
    bodies
        .iter()
        .map(|b| {
            let mut json = Vec::new();
            flate2::read::DeflateDecoder::new(&b[..])
                .read_to_end(&mut json)
                .expect("inflate");
            serde_json::from_slice(&json).expect("a checkpoint-stream message")
        })
        .collect()
}

/// The policy, and a broker, a checkpoint stream and an InfluxDB around it.
struct Sim {
    settings: PolicySettings,
    lifecycle: LifecycleSettings,
    policy: Policy<usize>,
    t0: Instant,
    /// Every message published, and its body, by index.
    msgs: Vec<(Msg, Vec<u8>)>,
    /// Messages the load generators publish later: when, and what (or a raw body).
    schedule: VecDeque<(Instant, Msg, Option<Vec<u8>>)>,
    /// In the queue, not delivered yet.
    backlog: VecDeque<usize>,
    /// Delivered to the writer's consumer, not taken in by the policy yet.
    consumer: VecDeque<Inbound<usize>>,
    /// This session's delivery tags: the message each carried.
    delivered: HashMap<DeliveryId, usize>,
    settled: HashSet<DeliveryId>,
    next_tag: DeliveryId,
    /// Messages acked (over all sessions), and when.
    acked: Vec<(usize, Instant)>,
    dead: Vec<(usize, String)>,
    /// `event.completed` messages published: the run, and the payload.
    completed: Vec<(String, Value)>,
    statuses: Vec<Instant>,
    /// When each checkpoint was sent, and its records.
    checkpoints: Vec<(Instant, Vec<Record>)>,
    /// Checkpoints sent and not confirmed: their records, and when the confirm comes.
    in_flight: VecDeque<(Vec<Record>, Option<Instant>)>,
    /// The latest confirmed record of each run.
    durable: HashMap<Uuid, Record>,
    /// The write in flight, and when InfluxDB answers.
    write: Option<(Vec<Batch>, Option<Instant>)>,
    /// When each write started.
    writes: Vec<Instant>,
    /// How long the stream takes to confirm a checkpoint; `None`: never (confirm by hand).
    confirm_latency: Option<Duration>,
    /// How long InfluxDB takes to answer a write; `None`: it is down.
    write_latency: Option<Duration>,
    /// Runs whose points InfluxDB rejects (HTTP 400).
    reject: HashSet<Uuid>,
    max_unacked: usize,
    max_in_flight: usize,
}

impl Sim {
    /// Prefetch 100, a checkpoint every 10 deliveries, 15 s ticks; the stream confirms in 10 ms,
    /// InfluxDB answers in 100 ms.
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(change: impl FnOnce(&mut PolicySettings)) -> Self {
        let mut settings = PolicySettings {
            snapshot_interval: Duration::from_secs(15),
            prefetch: 100,
            checkpoint_after: 10,
            token_secret: None,
            clock: Clock::tokio(wall_start()),
        };
        change(&mut settings);
        let lifecycle = LifecycleSettings {
            snapshot_interval: settings.snapshot_interval,
            ..LifecycleSettings::default()
        };
        Self {
            policy: Policy::new(Lifecycle::new(lifecycle.clone()), settings.clone()),
            settings,
            lifecycle,
            t0: Instant::now(),
            msgs: Vec::new(),
            schedule: VecDeque::new(),
            backlog: VecDeque::new(),
            consumer: VecDeque::new(),
            delivered: HashMap::new(),
            settled: HashSet::new(),
            next_tag: 1,
            acked: Vec::new(),
            dead: Vec::new(),
            completed: Vec::new(),
            statuses: Vec::new(),
            checkpoints: Vec::new(),
            in_flight: VecDeque::new(),
            durable: HashMap::new(),
            write: None,
            writes: Vec::new(),
            confirm_latency: Some(Duration::from_millis(10)),
            write_latency: Some(Duration::from_millis(100)),
            reject: HashSet::new(),
            max_unacked: 0,
            max_in_flight: 0,
        }
    }

    fn start(&mut self) {
        let actions = self.policy.start();
        self.apply(actions);
    }

    /// `t0 + s` seconds.
    fn at(&self, s: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(s)
    }

    /// `msg` is published now.
    fn publish(&mut self, msg: Msg) {
        self.publish_at(Instant::now(), msg);
    }

    fn publish_at(&mut self, at: Instant, msg: Msg) {
        self.schedule.push_back((at, msg, None));
        self.schedule.make_contiguous().sort_by_key(|(at, ..)| *at);
    }

    /// A message with this body (invalid, or with a bad token) is published now.
    fn publish_raw(&mut self, msg: Msg, body: Vec<u8>) {
        self.schedule.push_back((Instant::now(), msg, Some(body)));
    }

    fn body(&self, m: &Msg) -> Vec<u8> {
        self.envelope(m, String::new()).to_json()
    }

    fn envelope(&self, m: &Msg, token: String) -> Envelope {
        let now = self.settings.clock.now();
        let body = match m.kind {
            Kind::Register => Body::Registered(info()),
            Kind::Stats => Body::Stats(payload(m.requests, now)),
            Kind::Commit => Body::Committed(CommitPayload {
                host: "h".into(),
                stats: payload(m.requests, now),
                thresholds: Vec::new(),
            }),
        };
        Envelope {
            event_id: m.run,
            node_id: m.node.into(),
            seq: m.seq,
            sent_at: now,
            token,
            key_id: None,
            body,
        }
    }

    /// Runs the loop for `d`.
    async fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        self.run_until(end).await;
    }

    /// Runs the loop as [`crate::leader`] does until `end`: a delivery the consumer holds comes
    /// first, then whatever is due first: a message published, a confirm, a write's answer, the
    /// policy's timer.
    async fn run_until(&mut self, end: Instant) {
        loop {
            self.deliver();
            if let Some(d) = self.consumer.pop_front() {
                let consumer = &mut self.consumer;
                let actions = self
                    .policy
                    .delivered(d, || Ok(consumer.pop_front()))
                    .expect("delivered");
                self.apply(actions);
                continue;
            }
            let published = self.schedule.front().map(|(at, ..)| *at);
            let confirm = self.in_flight.front().and_then(|(_, at)| *at);
            let answer = self.write.as_ref().and_then(|(_, at)| *at);
            let timer = self.policy.deadline();
            let next = [published, confirm, answer, Some(timer)]
                .into_iter()
                .flatten()
                .min()
                .expect("the timer");
            if next > end {
                sleep_until(end).await;
                return;
            }
            sleep_until(next).await;
            if published == Some(next) {
                let (_, msg, raw) = self.schedule.pop_front().expect("scheduled");
                let body = raw.unwrap_or_else(|| self.body(&msg));
                self.msgs.push((msg, body));
                self.backlog.push_back(self.msgs.len() - 1);
            } else if confirm == Some(next) {
                self.confirm();
            } else if answer == Some(next) {
                self.answer_write();
            } else {
                let consumer = &mut self.consumer;
                let actions = self
                    .policy
                    .timer(|| Ok(consumer.pop_front()))
                    .expect("timer");
                self.apply(actions);
            }
        }
    }

    /// The broker delivers from the queue while fewer than the prefetch are unacked.
    fn deliver(&mut self) {
        while self.delivered.len() - self.settled.len() < usize::from(self.settings.prefetch) {
            let Some(i) = self.backlog.pop_front() else {
                return;
            };
            let tag = self.next_tag;
            self.next_tag += 1;
            self.delivered.insert(tag, i);
            self.consumer.push_back(Inbound {
                tag,
                body: self.msgs[i].1.clone(),
                meta: i,
            });
        }
    }

    /// Executes the policy's actions as the leader loop does, checking each ack.
    fn apply(&mut self, actions: Vec<Action<usize>>) {
        for action in actions {
            match action {
                Action::Ack(tags) => {
                    for tag in tags {
                        let i = self.settle(tag);
                        self.check_durable(i);
                        self.acked.push((i, Instant::now()));
                    }
                }
                Action::DeadLetter { delivery, reason } => {
                    let i = self.settle(delivery.tag);
                    assert_eq!(i, delivery.meta, "the dead letter carries its own delivery");
                    assert_eq!(delivery.body, self.msgs[i].1, "and its body");
                    self.dead.push((i, reason));
                }
                Action::PublishCompleted(body) => {
                    let env: Value = serde_json::from_slice(&body).expect("json");
                    assert_eq!(env["kind"], "completed");
                    let run = env["eventId"].as_str().expect("eventId").to_string();
                    self.completed.push((run, env["payload"].clone()));
                }
                Action::PublishStatus(body) => {
                    let _: protocol::RunningSet = serde_json::from_slice(&body).expect("json");
                    self.statuses.push(Instant::now());
                }
                Action::SendCheckpoint(bodies) => {
                    let messages = stream_messages(&bodies);
                    assert!(
                        matches!(messages.last(), Some(StreamMessage::Cycle { .. })),
                        "a checkpoint ends with its cycle"
                    );
                    let mut records = Vec::new();
                    for m in messages {
                        match m {
                            StreamMessage::Runs { records: r } => records.extend(r),
                            StreamMessage::Run(r) => records.push(*r),
                            StreamMessage::Cycle { .. } | StreamMessage::Marker { .. } => {}
                        }
                    }
                    let confirm_at = self.confirm_latency.map(|d| Instant::now() + d);
                    self.checkpoints.push((Instant::now(), records.clone()));
                    self.in_flight.push_back((records, confirm_at));
                    self.max_in_flight = self.max_in_flight.max(self.in_flight.len());
                }
                Action::StartWrite(batches) => {
                    assert!(
                        self.write.is_none(),
                        "a write started while one is in flight"
                    );
                    let answer_at = self.write_latency.map(|d| Instant::now() + d);
                    self.write = Some((batches, answer_at));
                    self.writes.push(Instant::now());
                }
            }
        }
        self.max_unacked = self.max_unacked.max(self.policy.unacked());
    }

    /// The message delivery `tag` carried; it must not have been settled before (a second ack
    /// is a channel error that ends the session).
    fn settle(&mut self, tag: DeliveryId) -> usize {
        assert!(self.settled.insert(tag), "delivery {tag} settled twice");
        self.delivered[&tag]
    }

    /// Panics unless message `i`'s effect is durable, or `i` is superseded by a message of the
    /// same node the policy has taken in.
    fn check_durable(&self, i: usize) {
        let m = &self.msgs[i].0;
        let waiting: HashSet<usize> = self.consumer.iter().map(|d| d.meta).collect();
        // Stats are superseded by the node's newer stats or its commit; a register or commit
        // repeats one taken in before it (which is held, or durable).
        let superseded = self.delivered.values().any(|&j| {
            let n = &self.msgs[j].0;
            j != i
                && !waiting.contains(&j)
                && (n.run, n.node) == (m.run, m.node)
                && match m.kind {
                    Kind::Stats => {
                        n.kind == Kind::Commit || (n.kind == Kind::Stats && n.seq >= m.seq)
                    }
                    Kind::Register | Kind::Commit => n.kind == m.kind && j < i,
                }
        });
        if superseded {
            return;
        }
        let durable = self.durable.get(&m.run).is_some_and(|r| match &r.state {
            // The run's tombstone: its final record is written.
            None => true,
            Some(state) => {
                let v = serde_json::to_value(state).expect("json");
                let node = &v["nodes"][m.node];
                // A finalizing run's final record is computed from what it holds.
                !v["completed"].is_null()
                    || match m.kind {
                        Kind::Register => !v["info"].is_null() && node.is_object(),
                        Kind::Stats => node["seq"].as_u64() >= Some(m.seq),
                        Kind::Commit => !node["committedAt"].is_null(),
                    }
            }
        });
        assert!(
            durable,
            "{m:?} acked at {:?} before a confirmed checkpoint carries it",
            Instant::now() - self.t0
        );
    }

    /// The oldest checkpoint in flight is confirmed.
    fn confirm(&mut self) {
        let (records, _) = self.in_flight.pop_front().expect("a checkpoint in flight");
        for r in records {
            self.durable.insert(r.event_id, r);
        }
        let actions = self.policy.confirmed().expect("confirmed");
        self.apply(actions);
    }

    /// InfluxDB answers the write in flight: the rejected runs' points with a 400, the rest
    /// written.
    fn answer_write(&mut self) {
        let (batches, _) = self.write.take().expect("a write in flight");
        let mut outcome = WriteOutcome::default();
        for part in batches.into_iter().flat_map(|b| b.parts) {
            if self.reject.contains(&part.event_id) {
                outcome
                    .rejected
                    .push((part, "HTTP 400: field type conflict".into()));
            } else {
                outcome.written.push(part);
            }
        }
        let actions = self.policy.written(outcome).expect("written");
        self.apply(actions);
    }

    /// The writer dies: its connection closes, the broker requeues what was not acked (at the
    /// head of the queue, in order), the checkpoints in flight and the write are lost. A new
    /// leader restores the runs from the confirmed records and starts.
    fn crash(&mut self) {
        let mut unsettled: Vec<(DeliveryId, usize)> = self
            .delivered
            .iter()
            .filter(|(tag, _)| !self.settled.contains(tag))
            .map(|(tag, i)| (*tag, *i))
            .collect();
        unsettled.sort_unstable();
        for (_, i) in unsettled.into_iter().rev() {
            self.backlog.push_front(i);
        }
        self.consumer.clear();
        self.delivered.clear();
        self.settled.clear();
        self.in_flight.clear();
        self.write = None;
        let mut lifecycle = Lifecycle::new(self.lifecycle.clone());
        lifecycle.restore(self.durable.values().cloned());
        self.policy = Policy::new(lifecycle, self.settings.clone());
        self.start();
    }

    /// Shutdown, as the leader loop does it: the write in flight is dropped, the last
    /// checkpoint sent, and the confirms in flight awaited.
    async fn shutdown(&mut self) {
        self.write = None;
        let actions = self.policy.shutdown().expect("shutdown");
        self.apply(actions);
        while let Some(at) = self.in_flight.front().and_then(|(_, at)| *at) {
            sleep_until(at).await;
            self.confirm();
        }
    }

    fn acked(&self) -> Vec<usize> {
        self.acked.iter().map(|(i, _)| *i).collect()
    }

    /// The first instant `i` was acked.
    fn acked_at(&self, i: usize) -> Instant {
        self.acked
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, at)| *at)
            .unwrap_or_else(|| panic!("message {i} acked"))
    }

    /// The last checkpoint sent carries a tombstone of `run`.
    fn tombstoned(&self, run: Uuid) -> bool {
        self.checkpoints
            .iter()
            .flat_map(|(_, records)| records)
            .any(|r| r.event_id == run && r.state.is_none())
    }
}

#[tokio::test(start_paused = true)]
async fn acks_wait_for_the_checkpoint_confirm_and_superseded_stats_go_at_once() {
    let mut sim = Sim::with(|s| s.checkpoint_after = 3);
    sim.confirm_latency = None;
    sim.start();
    let a = run_id(1);
    sim.publish(register(a, "n1"));
    sim.publish(stats(a, "n1", 1, 10));
    sim.publish(stats(a, "n1", 2, 20));
    sim.run_for(Duration::from_millis(50)).await;
    // Stats 1 is superseded by stats 2: acked at once. The register and stats 2 are folded in
    // and checkpointed, and wait for the confirm.
    assert_eq!(sim.acked(), vec![1]);
    assert_eq!(sim.checkpoints.len(), 1);
    assert_eq!(sim.policy.unacked(), 2);
    // Ticks come and go (a second checkpoint goes out after the tick's write); nothing else is
    // acked until the stream confirms.
    sim.run_for(Duration::from_secs(40)).await;
    assert_eq!(sim.acked(), vec![1]);
    assert_eq!(sim.checkpoints.len(), 2, "the tick's checkpoint");
    sim.confirm();
    assert_eq!(sim.acked(), vec![1, 0, 2], "the register first");
    assert_eq!(sim.policy.unacked(), 0);
    sim.confirm();
    assert_eq!(sim.acked.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_ticks_checkpoint_waits_for_its_write_or_5_s() {
    // Only ticks checkpoint here.
    let mut sim = Sim::with(|s| s.checkpoint_after = 1000);
    sim.write_latency = Some(Duration::from_secs(2));
    sim.start();
    sim.publish(register(run_id(1), "n1"));
    sim.publish(stats(run_id(1), "n1", 1, 10));
    // The first tick: 08:00:15, 14.5 s in (and 5 ms).
    let tick = sim.policy.next_tick;
    assert_eq!(tick, sim.t0 + Duration::from_millis(14_505));
    sim.run_until(tick + Duration::from_secs(10)).await;
    assert_eq!(
        sim.writes,
        vec![sim.at(0.0), tick],
        "the register, then the tick"
    );
    let sent: Vec<Instant> = sim.checkpoints.iter().map(|(at, _)| *at).collect();
    assert_eq!(
        sent,
        vec![tick + Duration::from_secs(2)],
        "once the write is done"
    );
    // InfluxDB goes down: the next tick's write never ends, and its checkpoint goes 5 s after
    // the tick.
    sim.write_latency = None;
    let tick = sim.policy.next_tick;
    sim.run_until(tick + Duration::from_secs(10)).await;
    assert_eq!(sim.writes.last(), Some(&tick));
    assert_eq!(
        sim.checkpoints.last().map(|(at, _)| *at),
        Some(tick + CHECKPOINT_AFTER_TICK)
    );
    // While the write still hangs, each tick's checkpoint goes 5 s after it too.
    let tick = sim.policy.next_tick;
    sim.run_until(tick + Duration::from_secs(10)).await;
    assert_eq!(sim.writes.len(), 3, "one write at a time");
    assert_eq!(
        sim.checkpoints.last().map(|(at, _)| *at),
        Some(tick + CHECKPOINT_AFTER_TICK)
    );
    assert_eq!(sim.acked(), vec![0, 1], "once checkpointed");
}

#[tokio::test(start_paused = true)]
async fn with_ticks_shorter_than_5_s_a_hanging_write_leaves_checkpoints_to_the_deliveries() {
    let mut sim = Sim::with(|s| {
        s.snapshot_interval = Duration::from_secs(1);
        s.checkpoint_after = 50;
    });
    sim.write_latency = None;
    sim.start();
    sim.publish(register(run_id(0), "n1"));
    sim.publish(stats(run_id(0), "n1", 1, 10));
    // Each tick moves the cap to 5 s after it: the tick's checkpoint keeps waiting for the write.
    sim.run_for(Duration::from_secs(10)).await;
    assert!(sim.checkpoints.is_empty());
    // Deliveries are checkpointed once three quarters of the prefetch are unacked.
    for i in 1..=80 {
        sim.publish(register(run_id(i), "n1"));
    }
    sim.run_for(Duration::from_millis(100)).await;
    assert_eq!(sim.checkpoints.len(), 1);
    // Run 0's register and stats, and 73 registers.
    assert_eq!(sim.checkpoints[0].1.len(), 74);
    assert_eq!(sim.acked.len(), 75);
}

/// `runs` runs register over `runs / 100` s, 10 every 100 ms, each sending stats 50 ms after;
/// returns the most deliveries held unacked at once.
async fn most_unacked(runs: u32) -> usize {
    let mut sim = Sim::with(|s| {
        s.prefetch = 1000;
        s.checkpoint_after = 100;
    });
    sim.confirm_latency = Some(Duration::from_millis(20));
    sim.write_latency = Some(Duration::from_millis(200));
    sim.start();
    for i in 0..runs {
        let at = sim.at(f64::from(i / 10) * 0.1);
        let run = run_id(u128::from(i));
        sim.publish_at(at, register(run, "n1"));
        sim.publish_at(at + Duration::from_millis(50), stats(run, "n1", 1, 10));
    }
    sim.run_for(Duration::from_secs(f64::from(runs / 100) as u64 + 30))
        .await;
    assert_eq!(sim.msgs.len(), 2 * runs as usize);
    assert_eq!(
        sim.acked.len(),
        2 * runs as usize,
        "everything, once checkpointed"
    );
    assert_eq!(sim.policy.unacked(), 0);
    assert!(sim.max_in_flight <= MAX_CHECKPOINTS_IN_FLIGHT);
    sim.max_unacked
}

#[tokio::test(start_paused = true)]
async fn the_unacked_set_stays_small_whatever_the_number_of_runs() {
    // 200 runs take 2 s, 1,500 runs 15 s: a tick comes while they register.
    let few = most_unacked(200).await;
    let many = most_unacked(1500).await;
    let bound = (MAX_CHECKPOINTS_IN_FLIGHT + 1) * 100;
    assert!(
        few <= bound && many <= bound,
        "at most {few} and {many} unacked"
    );
}

#[tokio::test(start_paused = true)]
async fn at_most_two_checkpoints_are_in_flight() {
    let mut sim = Sim::with(|s| s.checkpoint_after = 5);
    sim.confirm_latency = None;
    sim.start();
    for i in 0..50 {
        sim.publish(register(run_id(i), "n1"));
    }
    sim.run_for(Duration::from_secs(1)).await;
    assert_eq!(sim.checkpoints.len(), MAX_CHECKPOINTS_IN_FLIGHT);
    assert_eq!(sim.policy.unacked(), 50, "taken in, none confirmed");
    // One confirm: its deliveries are acked, and the next checkpoint goes out.
    sim.confirm();
    assert_eq!(sim.checkpoints.len(), 3);
    assert_eq!(sim.in_flight.len(), MAX_CHECKPOINTS_IN_FLIGHT);
    assert!(!sim.acked.is_empty());
    // A tick's checkpoint waits too.
    let tick = sim.policy.next_tick;
    sim.run_until(tick + Duration::from_secs(6)).await;
    assert_eq!(sim.checkpoints.len(), 3);
    sim.confirm();
    assert_eq!(sim.checkpoints.len(), 4, "sent at the confirm");
    assert_eq!(sim.max_in_flight, MAX_CHECKPOINTS_IN_FLIGHT);
}

#[tokio::test(start_paused = true)]
async fn a_bad_message_is_dead_lettered_with_its_reason() {
    let secret = "s3cret";
    let mut sim = Sim::with(|s| s.token_secret = Some(SecretString::from(secret)));
    sim.start();
    let a = run_id(1);
    sim.publish_raw(register(a, "n1"), b"{\"schema\": \"loadtest.v1\"".to_vec());
    let bad = sim.envelope(&register(a, "n1"), "not-the-token".into());
    sim.publish_raw(register(a, "n1"), bad.to_json());
    let token = protocol::event_token(secret.as_bytes(), &a);
    let good = sim.envelope(&register(a, "n1"), token);
    sim.publish_raw(register(a, "n1"), good.to_json());
    sim.run_for(Duration::from_millis(50)).await;
    assert_eq!(sim.dead.len(), 2, "{:?}", sim.dead);
    assert_eq!(sim.dead[0].0, 0);
    assert!(
        sim.dead[0].1.starts_with("invalid message: "),
        "{}",
        sim.dead[0].1
    );
    assert_eq!(sim.dead[1], (1, "bad event token".to_string()));
    assert!(sim.acked.is_empty());
    assert_eq!(sim.policy.unacked(), 1, "the valid register is held");
    assert_eq!(sim.policy.lifecycle.runs(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_final_record_dead_letters_what_its_run_holds() {
    let mut sim = Sim::with(|s| s.checkpoint_after = 1000);
    sim.start();
    let (good, bad) = (run_id(1), run_id(2));
    sim.reject.insert(bad);
    for run in [good, bad] {
        sim.publish(register(run, "n1"));
        sim.publish(stats(run, "n1", 1, 10));
        sim.publish(commit(run, "n1", 2, 20));
    }
    sim.run_for(Duration::from_secs(2)).await;
    // Each commit supersedes its stats; the bad run's register and commit are dead-lettered
    // with InfluxDB's reason once its final record is rejected.
    let reason = "InfluxDB rejected the points: HTTP 400: field type conflict".to_string();
    assert_eq!(sim.dead, vec![(3, reason.clone()), (5, reason)]);
    assert!(sim.tombstoned(bad) && sim.tombstoned(good));
    assert_eq!(sim.completed.len(), 1, "only the good run completed");
    assert_eq!(sim.completed[0].1["requests"], 20);
    let mut acked = sim.acked();
    acked.sort_unstable();
    assert_eq!(acked, vec![0, 1, 2, 4]);
    assert_eq!(sim.policy.unacked(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_finished_runs_deliveries_are_acked_once_its_tombstone_is_confirmed() {
    let mut sim = Sim::with(|s| s.checkpoint_after = 1000);
    sim.confirm_latency = Some(Duration::from_millis(300));
    sim.write_latency = Some(Duration::from_secs(1));
    sim.start();
    let a = run_id(1);
    sim.publish(register(a, "n1"));
    sim.publish(register(a, "n2"));
    sim.publish(commit(a, "n1", 1, 30));
    sim.publish_at(sim.at(3.0), commit(a, "n2", 1, 40));
    sim.run_for(Duration::from_secs(10)).await;
    assert_eq!(sim.completed.len(), 1);
    assert_eq!(sim.completed[0].1["requests"], 70);
    assert_eq!(sim.completed[0].1["status"], "committed");
    // The final record was written at 4 s (the commit at 3 s, InfluxDB's second); the tombstone
    // went out then, and its confirm acked every delivery of the run.
    let (sent, records) = sim.checkpoints.last().expect("the tombstone");
    assert_eq!(*sent, sim.at(4.0));
    assert!(records.iter().any(|r| r.event_id == a && r.state.is_none()));
    for i in 0..4 {
        assert_eq!(sim.acked_at(i), sim.at(4.3), "message {i}");
    }
}

#[tokio::test(start_paused = true)]
async fn status_changes_are_coalesced() {
    let mut sim = Sim::new();
    sim.start();
    assert_eq!(sim.statuses, vec![sim.at(0.0)], "at the start");
    // 100 runs register within 200 ms: one status for the lot, 500 ms after the first.
    for i in 0..100u32 {
        let at = sim.at(1.0 + f64::from(i) * 0.002);
        sim.publish_at(at, register(run_id(u128::from(i)), "n1"));
    }
    sim.run_until(sim.at(4.9)).await;
    assert_eq!(sim.statuses, vec![sim.at(0.0), sim.at(1.5)]);
    // And every 5 s.
    sim.run_until(sim.at(6.6)).await;
    assert_eq!(sim.statuses.last(), Some(&sim.at(6.5)));
}

#[tokio::test(start_paused = true)]
async fn shutdown_checkpoints_what_is_folded_in_then_acks_it() {
    let mut sim = Sim::with(|s| s.checkpoint_after = 1000);
    sim.start();
    for i in 0..3 {
        sim.publish(register(run_id(i), "n1"));
    }
    sim.run_for(Duration::from_millis(500)).await;
    assert!(sim.checkpoints.is_empty());
    assert_eq!(sim.policy.unacked(), 3);
    sim.shutdown().await;
    assert_eq!(sim.checkpoints.len(), 1);
    assert_eq!(sim.checkpoints[0].1.len(), 3, "a record of each run");
    let mut acked = sim.acked();
    acked.sort_unstable();
    assert_eq!(acked, vec![0, 1, 2]);
    assert_eq!(sim.policy.unacked(), 0);
}

/// Four runs of two nodes each: registers, stats every 2 s, commits at 20 s; the nodes' final
/// requests are 100 and 90.
fn four_runs(sim: &mut Sim) {
    for r in 0..4u32 {
        let run = run_id(u128::from(r));
        let start = 0.1 + f64::from(r) * 0.3;
        for (node, last) in [("a", 100u64), ("b", 90)] {
            sim.publish_at(sim.at(start), register(run, node));
            for seq in 1..=8u64 {
                let at = sim.at(start + 2.0 * seq as f64);
                sim.publish_at(at, stats(run, node, seq, 10 * seq));
            }
            sim.publish_at(sim.at(start + 20.0), commit(run, node, 9, last));
        }
    }
}

/// What each run's `event.completed` says, by run (a run whose message was published twice,
/// by a writer killed before its tombstone was confirmed and by the next, appears twice if the
/// two differ).
fn outcomes(sim: &Sim) -> Vec<(String, Value)> {
    let mut seen: Vec<(String, Value)> = Vec::new();
    for c in &sim.completed {
        if !seen.contains(c) {
            seen.push(c.clone());
        }
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    seen
}

#[tokio::test(start_paused = true)]
async fn a_writer_killed_at_any_instant_loses_nothing() {
    let reference = {
        let mut sim = Sim::with(|s| s.checkpoint_after = 4);
        sim.start();
        four_runs(&mut sim);
        sim.run_for(Duration::from_secs(60)).await;
        outcomes(&sim)
    };
    assert_eq!(reference.len(), 4);
    for (_, c) in &reference {
        let figures = (
            c["status"].as_str(),
            c["requests"].as_u64(),
            c["nodes"].as_u64(),
        );
        assert_eq!(figures, (Some("committed"), Some(190), Some(2)));
    }
    // Killed every 0.45 s of the 23 s the runs last, one instant per pass; slow confirms
    // widen the window between a checkpoint sent and confirmed.
    for k in 1..=50u32 {
        let mut sim = Sim::with(|s| s.checkpoint_after = 4);
        sim.confirm_latency = Some(Duration::from_millis(300));
        sim.start();
        four_runs(&mut sim);
        sim.run_until(sim.at(f64::from(k) * 0.45)).await;
        sim.crash();
        sim.run_for(Duration::from_secs(40)).await;
        assert_eq!(
            outcomes(&sim),
            reference,
            "killed at {:.2} s",
            f64::from(k) * 0.45
        );
        assert!(sim.backlog.is_empty() && sim.consumer.is_empty());
        assert_eq!(sim.policy.unacked(), 0, "everything settled in the end");
        assert!(sim.dead.is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_delivered_again_after_its_final_record_is_settled() {
    // Each message twice, then the whole run again, 0 to 1 s after its final record was
    // written (while the tombstone is being confirmed, or after).
    for k in 0..20u32 {
        let mut sim = Sim::with(|s| {
            s.snapshot_interval = Duration::from_secs(3600);
            s.checkpoint_after = 1000;
        });
        sim.confirm_latency = Some(Duration::from_millis(300));
        sim.start();
        let a = run_id(1);
        let run = [
            register(a, "n1"),
            stats(a, "n1", 1, 40),
            stats(a, "n1", 2, 80),
            commit(a, "n1", 3, 100),
        ];
        for m in &run {
            sim.publish(m.clone());
            sim.publish(m.clone());
        }
        while sim.completed.is_empty() {
            sim.run_for(Duration::from_millis(1)).await;
        }
        sim.run_for(Duration::from_millis(50) * k).await;
        for m in &run {
            sim.publish(m.clone());
        }
        sim.run_for(Duration::from_secs(10)).await;
        let after = 50 * k;
        assert_eq!(sim.policy.unacked(), 0, "replayed {after} ms after");
        assert_eq!(sim.acked.len(), 12, "replayed {after} ms after");
        assert!(sim.tombstoned(a));
        let (_, last) = sim.checkpoints.last().expect("a tombstone");
        assert!(
            last.iter().all(|r| r.state.is_none()),
            "replayed {after} ms after"
        );
    }
}
