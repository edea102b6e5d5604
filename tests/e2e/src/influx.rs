//! InfluxDB 1.x: create databases, write line protocol, read points back with InfluxQL, wait
//! for a run's status and summary.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::wait::eventually;

/// InfluxDB 1.x base URL.
pub const INFLUX: &str = "http://127.0.0.1:8086";

/// A database on the shared InfluxDB 1.x that is dropped when this guard is dropped (also when
/// the test fails). Tests that use a [`crate::Stack`] need none: the stack drops its
/// [`crate::Stack::db`].
#[derive(Debug)]
pub struct TempDb(pub String);

impl TempDb {
    /// Creates database `name` and returns its guard.
    pub async fn create(name: impl Into<String>) -> anyhow::Result<Self> {
        let db = Self(name.into());
        influx_create_db(&db.0).await?;
        Ok(db)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let q = format!("DROP DATABASE \"{}\"", self.0);
        // Its own thread and runtime: the drop may run inside a test's runtime.
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(influx_query_raw("", &q))?;
            Ok(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.0);
        }
    }
}

/// Creates a fresh InfluxDB 1.x database.
pub async fn influx_create_db(db: &str) -> anyhow::Result<()> {
    influx_query_raw("", &format!("CREATE DATABASE \"{db}\"")).await?;
    Ok(())
}

async fn influx_query_raw(db: &str, q: &str) -> anyhow::Result<serde_json::Value> {
    let resp = reqwest::Client::new()
        .post(format!("{INFLUX}/query"))
        .query(&[("db", db), ("epoch", "ns")])
        .form(&[("q", q)])
        .send()
        .await
        .context(
            "querying InfluxDB (start it with `influxd -config /etc/influxdb/influxdb.conf`)",
        )?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        bail!("InfluxDB answered {status}: {v}");
    }
    Ok(v)
}

/// Runs an InfluxQL query; returns InfluxDB's JSON answer as it is (series, tags, values).
pub async fn influx_query(db: &str, q: &str) -> anyhow::Result<serde_json::Value> {
    influx_query_raw(db, q).await
}

/// Runs an InfluxQL query; returns the rows of the first series as column → value maps.
pub async fn influx_rows(
    db: &str,
    q: &str,
) -> anyhow::Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let v = influx_query_raw(db, q).await?;
    let mut rows = Vec::new();
    let series = v["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for s in series {
        let cols: Vec<String> = s["columns"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        for vals in s["values"].as_array().cloned().unwrap_or_default() {
            let mut row = serde_json::Map::new();
            for (c, v) in cols
                .iter()
                .zip(vals.as_array().cloned().unwrap_or_default())
            {
                row.insert(c.clone(), v);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// [`influx_rows`] against the InfluxDB at `base`, rows of every series (with the series'
/// tags as columns).
pub async fn influx_rows_at(
    base: &str,
    db: &str,
    q: &str,
) -> anyhow::Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/query"))
        .query(&[("db", db), ("epoch", "ns")])
        .form(&[("q", q)])
        .send()
        .await
        .with_context(|| format!("querying InfluxDB at {base}"))?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        bail!("InfluxDB answered {status}: {v}");
    }
    if let Some(e) = v["results"][0]["error"].as_str() {
        bail!("InfluxQL error: {e}");
    }
    let mut rows = Vec::new();
    for s in v["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let cols: Vec<String> = s["columns"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let tags = s["tags"].as_object().cloned().unwrap_or_default();
        for vals in s["values"].as_array().cloned().unwrap_or_default() {
            let mut row = tags.clone();
            for (c, v) in cols
                .iter()
                .zip(vals.as_array().cloned().unwrap_or_default())
            {
                row.insert(c.clone(), v);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Writes line protocol to the InfluxDB at `base` (database `db`); returns the HTTP status.
pub async fn influx_write_at(base: &str, db: &str, lines: &str) -> anyhow::Result<u16> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/write"))
        .query(&[("db", db), ("precision", "ns")])
        .body(lines.to_string())
        .send()
        .await?;
    Ok(resp.status().as_u16())
}

/// Creates database `db` on the InfluxDB at `base`.
pub async fn influx_create_db_at(base: &str, db: &str) -> anyhow::Result<()> {
    influx_rows_at(base, "", &format!("CREATE DATABASE \"{db}\"")).await?;
    Ok(())
}

/// Waits up to 30 s for run `uuid`'s `Aggregated` summary point in InfluxDB 1.x database `db`
/// and returns its `fields` (an InfluxQL field list, e.g. `requests, failures`).
pub async fn aggregated_summary(
    db: &str,
    uuid: &str,
    fields: &str,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let q = format!(
        "SELECT {fields} FROM loadtest_summary WHERE event_id = '{uuid}' AND \"name\" = 'Aggregated'"
    );
    eventually(Duration::from_secs(30), "the summary", || async {
        Ok(influx_rows(db, &q).await?.into_iter().next())
    })
    .await
}

/// Waits up to `timeout` for run `uuid`'s last `loadtest_event` status in database `db` of the
/// InfluxDB at `base` to be `status`.
pub async fn wait_status(
    base: &str,
    db: &str,
    uuid: &str,
    status: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let q = format!("SELECT last(status) AS status FROM loadtest_event WHERE event_id = '{uuid}'");
    eventually(timeout, &format!("run {uuid} {status}"), || async {
        let rows = influx_rows_at(base, db, &q).await?;
        Ok(rows.first().filter(|r| r["status"] == status).map(|_| ()))
    })
    .await
}

/// Integer field `k` of an InfluxQL row; panics naming it when it is missing.
pub fn field_u64(row: &serde_json::Map<String, Value>, k: &str) -> u64 {
    row.get(k)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{k} missing in {row:?}"))
}
