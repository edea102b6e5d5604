//! A local HTTP server standing in for a Slack incoming webhook: it records every post (when
//! it came, its JSON) and answers as the test scripts it (a list of answers, then a default).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::wait::eventually;

/// One answer of the stand-in webhook.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` header, when set.
    pub retry_after: Option<&'static str>,
    /// Body (Slack answers `ok`, or an error code such as `invalid_payload`).
    pub body: &'static str,
}

impl Answer {
    /// `200 ok`, as Slack answers a message it took.
    pub fn ok() -> Self {
        Self::status(200, "ok")
    }

    /// `status` with `body`.
    pub fn status(status: u16, body: &'static str) -> Self {
        Self {
            status,
            retry_after: None,
            body,
        }
    }

    /// `429 rate_limited` with `Retry-After: seconds`.
    pub fn rate_limited(seconds: &'static str) -> Self {
        Self {
            status: 429,
            retry_after: Some(seconds),
            body: "rate_limited",
        }
    }
}

/// A post the webhook received.
#[derive(Debug, Clone)]
pub struct Post {
    /// When it arrived.
    pub at: Instant,
    /// Its JSON body.
    pub body: Value,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Debug)]
struct State {
    script: VecDeque<Answer>,
    default: Answer,
    posts: Vec<Post>,
}

/// The stand-in webhook, on 127.0.0.1:0 in the test process.
#[derive(Debug)]
pub struct FakeSlack {
    /// The webhook URL to configure (its path is a secret, as Slack's are).
    pub url: String,
    /// The secret part of the URL, to check that it is never shown.
    pub secret: String,
    state: Arc<Mutex<State>>,
}

impl FakeSlack {
    /// Starts a webhook that answers `200 ok` until told otherwise.
    pub async fn start() -> anyhow::Result<Self> {
        let secret = format!("secret{}", uuid::Uuid::new_v4().simple());
        let state = Arc::new(Mutex::new(State {
            script: VecDeque::new(),
            default: Answer::ok(),
            posts: Vec::new(),
        }));
        let s = state.clone();
        let path = format!("/services/T0E2E/B0E2E/{secret}");
        let app = axum::Router::new().route(
            &path,
            axum::routing::post(move |body: String| {
                let s = s.clone();
                async move { answer(&s, &body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}{path}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, secret, state })
    }

    /// Answers the next posts with `answers`, in order, then with the default.
    pub fn then(&self, answers: Vec<Answer>) {
        self.lock().script.extend(answers);
    }

    /// Answers every post (after the scripted ones) with `answer`.
    pub fn always(&self, answer: Answer) {
        self.lock().default = answer;
    }

    /// Every post so far.
    pub fn posts(&self) -> Vec<Post> {
        self.lock().posts.clone()
    }

    /// Waits up to `timeout` for `n` posts; returns them all.
    pub async fn wait_posts(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<Post>> {
        eventually(timeout, &format!("{n} posts to the webhook"), || async {
            let posts = self.posts();
            Ok((posts.len() >= n).then_some(posts))
        })
        .await
    }

    /// Waits up to `timeout` for the post about run `run_id` that was answered 2xx; returns
    /// its JSON.
    pub async fn wait_message_for(&self, run_id: &str, timeout: Duration) -> anyhow::Result<Value> {
        eventually(
            timeout,
            &format!("a Slack message for run {run_id}"),
            || async {
                Ok(self
                    .posts()
                    .into_iter()
                    .find(|p| p.status < 300 && p.body.to_string().contains(run_id))
                    .map(|p| p.body))
            },
        )
        .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn answer(state: &Mutex<State>, body: &str) -> Response {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let a = s.script.pop_front().unwrap_or_else(|| s.default.clone());
    let json = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    s.posts.push(Post {
        at: Instant::now(),
        body: json,
        status: a.status,
    });
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match a.retry_after {
        Some(r) => (status, [("retry-after", r)], a.body).into_response(),
        None => (status, a.body).into_response(),
    }
}

/// The mrkdwn fields of a Slack message's first section, as (name, value): `*Name*\nvalue`.
pub fn slack_fields(message: &Value) -> anyhow::Result<Vec<(String, String)>> {
    let fields = message["blocks"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["fields"].is_array()))
        .and_then(|b| b["fields"].as_array())
        .with_context(|| format!("no section with fields in {message:#}"))?;
    fields
        .iter()
        .map(|f| {
            let text = f["text"].as_str().context("field without text")?;
            let (name, value) = text
                .split_once('\n')
                .with_context(|| format!("field {text:?}"))?;
            Ok((name.trim_matches('*').to_string(), value.to_string()))
        })
        .collect()
}

/// The value of field `name` of a Slack message (see [`slack_fields`]).
pub fn slack_field(message: &Value, name: &str) -> String {
    slack_fields(message)
        .unwrap_or_default()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {name} in {message:#}"))
}

/// The text of every block of a message (headers, sections, contexts), one per line.
pub fn slack_texts(message: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for b in message["blocks"].as_array().into_iter().flatten() {
        if let Some(t) = b["text"]["text"].as_str() {
            out.push(t.to_string());
        }
        for e in b["elements"].as_array().into_iter().flatten() {
            if let Some(t) = e["text"].as_str() {
                out.push(t.to_string());
            }
        }
    }
    out
}
