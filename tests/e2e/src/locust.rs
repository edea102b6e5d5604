//! What Locust prints and writes: its `--csv` stats file, the summary table it prints at exit,
//! and the plugin's `registered run` line; and the Locust release the tests run.

use std::collections::BTreeMap;

use anyhow::Context;

/// The Locust release `.ci/services.sh` installs (`LOCUST_PIN` there) and the Locust image
/// carries (`.ci/images.sh` passes it to infra/docker/Dockerfile); the tests check both.
pub const LOCUST_PIN: &str = "2.32.4";

/// (method, name) → (requests, failures); the `Aggregated` row has method `""`.
pub type Counts = BTreeMap<(String, String), (u64, u64)>;

/// Splits one CSV line (RFC 4180 quoting, as Python's `csv` writes it).
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// The counts of Locust's `PREFIX_stats.csv` (its text): per endpoint, and the `Aggregated` row.
pub fn parse_stats_csv(text: &str) -> anyhow::Result<Counts> {
    let mut lines = text.lines();
    let header = csv_fields(lines.next().context("empty stats CSV")?);
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no {name:?} column in {header:?}"))
    };
    let (ty, name, reqs, fails) = (
        col("Type")?,
        col("Name")?,
        col("Request Count")?,
        col("Failure Count")?,
    );
    let mut out = Counts::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f = csv_fields(line);
        out.insert(
            (f[ty].clone(), f[name].clone()),
            (f[reqs].parse()?, f[fails].parse()?),
        );
    }
    Ok(out)
}

/// The same counts from the summary table Locust prints at exit (`--only-summary`):
/// `GET      /items      146     0(0.00%) |  ...`; empty when there is none.
pub fn read_printed_summary(output: &str) -> Counts {
    let mut out = Counts::new();
    let start = output
        .lines()
        .position(|l| l.starts_with("Type") && l.contains("# reqs"));
    let Some(start) = start else {
        return out;
    };
    for line in output.lines().skip(start + 1) {
        if line.starts_with("Response time percentiles") {
            break;
        }
        let Some((left, _)) = line.split_once('|') else {
            continue;
        };
        if left.starts_with("--------") || left.trim().is_empty() {
            continue;
        }
        let tokens: Vec<&str> = left.split_whitespace().collect();
        if tokens.len() < 3 {
            continue;
        }
        let fails = tokens[tokens.len() - 1]
            .split('(')
            .next()
            .and_then(|n| n.parse().ok());
        let reqs = tokens[tokens.len() - 2].parse().ok();
        let (method, name) = if line.starts_with(' ') {
            (String::new(), tokens[..tokens.len() - 2].join(" "))
        } else {
            (tokens[0].to_string(), tokens[1..tokens.len() - 2].join(" "))
        };
        if let (Some(r), Some(f)) = (reqs, fails) {
            out.insert((method, name), (r, f));
        }
    }
    out
}

/// The run's uuid from the plugin's `registered run UUID with ...` line.
pub fn registered_uuid(output: &str) -> Option<String> {
    output
        .lines()
        .find(|l| l.contains("locust_consumer: registered run "))
        .and_then(|l| l.split("registered run ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|u| uuid::Uuid::parse_str(u).is_ok())
        .map(str::to_string)
}

/// The `Aggregated` (requests, failures) of `counts`.
pub fn aggregated(counts: &Counts) -> Option<(u64, u64)> {
    counts
        .get(&(String::new(), "Aggregated".to_string()))
        .copied()
}
