//! `--consumer-host`: the run is registered through the load-test API, which hands out its uuid
//! and event token; stats and the commit go to the API too, or with `--amqp-url` straight to
//! RabbitMQ in `loadtest.v1` envelopes carrying that token.

use anyhow::Context as _;
use futures::future::BoxFuture;
use protocol::api::{
    CommitFields, CommitMeasurement, CommitRequest, CommitTags, RegisterFields,
    RegisterMeasurement, RegisterRequest, RegisterResponse, RegisterTags, RequestStats,
    StatsRequest,
};
use protocol::{Body, CommitPayload, Envelope, StatsPayload, ThresholdVerdict};
use reqwest::Url;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::amqp::{self, AmqpPublisher};
use super::client::{self, ApiClient};
use super::publishing::{Receipt, RunContext, Sink};
use crate::cli::{RunArgs, TOOL};

/// A run registered through the API.
pub(crate) struct ApiSink {
    client: ApiClient,
    registration: RegisterResponse,
    run: RunContext,
    /// The sequence number of the last stats message; the commit takes the next one.
    seq: u64,
    /// Every `--stats-interval` from the start; a tick missed while a publish was retrying is
    /// skipped (the next snapshot supersedes it anyway).
    ticker: Interval,
    /// Where stats and the commit go.
    transport: Transport,
}

enum Transport {
    /// To the API.
    Http,
    /// To RabbitMQ (`--amqp-url`).
    Amqp(Box<AmqpPublisher>),
}

impl std::fmt::Debug for ApiSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSink")
            .field("uuid", &self.registration.uuid)
            .field("seq", &self.seq)
            .field("amqp", &matches!(self.transport, Transport::Amqp(_)))
            .finish_non_exhaustive()
    }
}

impl ApiSink {
    /// Registers the run with the API at `consumer` (and connects to RabbitMQ with
    /// `--amqp-url`); a failure here ends the run before any load.
    pub(crate) async fn start(
        consumer: &Url,
        opts: &RunArgs,
        run: &RunContext,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let client = ApiClient::new(consumer.clone())?;
        let body = RegisterRequest {
            started_at: client::rfc3339(run.started_at),
            host: Some(run.hostname.clone()),
            measurement: RegisterMeasurement {
                fields: RegisterFields {
                    clients: opts.users,
                    hatch_rate: Some(opts.spawn_rate),
                    requests: Some(opts.iterations.unwrap_or(0)),
                },
                tags: RegisterTags {
                    target_host: Some(run.target_host.clone()),
                    mode: Some("single".to_string()),
                },
            },
            tool: Some(TOOL.to_string()),
            node_id: Some(run.node_id.clone()),
            run_key: opts.run_key.clone(),
            expected_nodes: opts.expected_nodes.map(u64::from),
        };
        let registration = tokio::select! {
            r = client.register(&body, opts.api_key.as_deref()) => {
                r.context("cannot register the run; the load test was not started")?
            }
            _ = shutdown.cancelled() => anyhow::bail!("interrupted before the run was registered"),
        };
        eprintln!(
            "Registered run {} with {} (node {})",
            registration.uuid, consumer, run.node_id
        );
        let transport = match &opts.amqp_url {
            None => Transport::Http,
            Some(url) => {
                let p = tokio::select! {
                    p = AmqpPublisher::connect(url, &opts.amqp_exchange) => p?,
                    _ = shutdown.cancelled() => anyhow::bail!("interrupted while connecting to RabbitMQ"),
                };
                eprintln!(
                    "Publishing stats and the commit to RabbitMQ at {} (exchange {})",
                    amqp::redact(url),
                    opts.amqp_exchange
                );
                Transport::Amqp(Box::new(p))
            }
        };
        let mut ticker =
            tokio::time::interval_at(Instant::now() + opts.stats_interval, opts.stats_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Ok(Self {
            client,
            registration,
            run: run.clone(),
            seq: 0,
            ticker,
            transport,
        })
    }

    async fn publish_stats(&mut self, payload: StatsPayload) {
        self.seq += 1;
        let (uuid, seq) = (self.registration.uuid, self.seq);
        let token = &self.registration.token;
        match &mut self.transport {
            Transport::Amqp(p) => {
                let env = Envelope::new(
                    uuid,
                    self.run.node_id.as_str(),
                    seq,
                    token.clone(),
                    Body::Stats(payload),
                );
                if let Err(e) = p.publish(&env).await {
                    tracing::warn!(event_id = %uuid, seq, error = format!("{e:#}"), "publishing stats to RabbitMQ failed");
                }
            }
            Transport::Http => {
                let msg = StatsRequest::new(Some(self.run.node_id.clone()), Some(seq), payload);
                if let Err(e) = self.client.publish_stats(uuid, token, &msg).await {
                    tracing::warn!(event_id = %uuid, seq, error = %e, "publishing stats failed");
                }
            }
        }
    }

    async fn commit_run(
        self,
        stats: &StatsPayload,
        verdicts: &[ThresholdVerdict],
    ) -> anyhow::Result<Receipt> {
        let uuid = self.registration.uuid;
        let seq = self.seq + 1;
        eprintln!("Committing run {uuid}");
        match self.transport {
            Transport::Amqp(mut p) => {
                let env = Envelope::new(
                    uuid,
                    self.run.node_id.as_str(),
                    seq,
                    self.registration.token.clone(),
                    Body::Committed(CommitPayload {
                        host: self.run.hostname.clone(),
                        stats: stats.clone(),
                        thresholds: verdicts.to_vec(),
                    }),
                );
                let result = p.publish(&env).await.with_context(|| {
                    format!(
                        "cannot commit run {uuid} through RabbitMQ; its final record is missing"
                    )
                });
                p.close().await;
                result?;
            }
            Transport::Http => {
                let body = CommitRequest {
                    started_at: Some(client::rfc3339(self.run.started_at)),
                    uuid,
                    host: Some(self.run.hostname.clone()),
                    node_id: Some(self.run.node_id.clone()),
                    seq: Some(seq),
                    user_count: Some(stats.user_count),
                    errors: Some(stats.errors.clone()),
                    measurement: CommitMeasurement {
                        fields: CommitFields {
                            request_stats: Some(RequestStats::Entries(stats.entries.clone())),
                        },
                        tags: Some(CommitTags {
                            hostname: Some(self.run.target_host.clone()),
                            mode: Some("single".to_string()),
                        }),
                    },
                    thresholds: (!verdicts.is_empty()).then(|| verdicts.to_vec()),
                    stopped_at: stats.stopped_at,
                };
                self.client
                    .commit(&self.registration.token, &body)
                    .await
                    .with_context(|| {
                        format!("cannot commit run {uuid}; its final record is missing")
                    })?;
            }
        }
        Ok(Receipt {
            message: format!("Run {uuid} committed to the load-test API."),
            output: None,
        })
    }
}

impl Sink for ApiSink {
    fn run_id(&self) -> Uuid {
        self.registration.uuid
    }

    fn tick(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.ticker.tick().await;
        })
    }

    fn publish(&mut self, stats: StatsPayload) -> BoxFuture<'_, ()> {
        Box::pin(self.publish_stats(stats))
    }

    fn commit<'a>(
        self: Box<Self>,
        stats: &'a StatsPayload,
        verdicts: &'a [ThresholdVerdict],
    ) -> BoxFuture<'a, anyhow::Result<Receipt>> {
        Box::pin(self.commit_run(stats, verdicts))
    }
}
