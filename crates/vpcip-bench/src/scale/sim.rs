//! The simulated agents: each long-polls as the real agents do, counts
//! what it receives and reports what it applied.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vpcip_client::Client;
use vpcip_model::desired::{Agent, AgentReport, Desired, WatchBatch};
use vpcip_model::paths;

/// How the simulated agents ask.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Protocol {
    Watch,
    Snapshot,
}

/// What every simulated agent counts.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) bytes: AtomicU64,
    pub(super) answers: AtomicU64,
}

/// One simulated agent: long-polls, counts, reports what it applied, and
/// tells `seen` (gateways) each answer's body with its time.
pub(super) struct SimAgent {
    pub(super) agent: Agent,
    pub(super) revision: Arc<std::sync::Mutex<Option<i64>>>,
    pub(super) first: Arc<tokio::sync::Notify>,
    pub(super) answered: Arc<std::sync::atomic::AtomicBool>,
    pub(super) task: Option<tokio::task::JoinHandle<()>>,
}

pub(super) type Seen = tokio::sync::mpsc::UnboundedSender<(Instant, String)>;

impl SimAgent {
    pub(super) fn start(
        &mut self,
        client: &Client,
        protocol: Protocol,
        counters: Arc<Counters>,
        seen: Option<Seen>,
    ) {
        let client = client.clone();
        let id = self.agent.id.clone();
        let revision = self.revision.clone();
        let first = self.first.clone();
        let answered = self.answered.clone();
        answered.store(false, Ordering::SeqCst);
        self.task = Some(tokio::spawn(async move {
            let mut quick = true;
            loop {
                let have = *revision
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // The first request after (re)connecting answers at once.
                let wait = if quick { 0 } else { 30 };
                let path = match (protocol, have) {
                    (Protocol::Watch, Some(r)) => {
                        format!(
                            "{}?revision={r}&wait={wait}",
                            paths::at(paths::AGENT_WATCH, &[&id])
                        )
                    }
                    (Protocol::Watch, None) => {
                        format!("{}?wait=0", paths::at(paths::AGENT_WATCH, &[&id]))
                    }
                    (Protocol::Snapshot, Some(r)) if !quick => {
                        format!(
                            "{}?after={r}&wait={wait}",
                            paths::at(paths::AGENT_DESIRED, &[&id])
                        )
                    }
                    (Protocol::Snapshot, _) => paths::at(paths::AGENT_DESIRED, &[&id]),
                };
                let Ok(body) = client.get::<serde_json::Value>(&path).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let at = Instant::now();
                let text = body.to_string();
                counters
                    .bytes
                    .fetch_add(text.len() as u64, Ordering::Relaxed);
                counters.answers.fetch_add(1, Ordering::Relaxed);
                let rev = match protocol {
                    Protocol::Watch => {
                        serde_json::from_value::<WatchBatch>(body).map(|b| b.revision)
                    }
                    Protocol::Snapshot => {
                        serde_json::from_value::<Desired>(body).map(|d| d.revision)
                    }
                };
                let Ok(rev) = rev else { return };
                *revision
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rev);
                if quick {
                    quick = false;
                    answered.store(true, Ordering::SeqCst);
                    first.notify_one();
                }
                if let Some(tx) = &seen {
                    let _ = tx.send((at, text));
                }
                let _ = client
                    .post::<_, ()>(
                        &paths::at(paths::AGENT_REPORT, &[&id]),
                        &AgentReport {
                            applied_revision: rev,
                            error: None,
                            missing_ports: vec![],
                            cluster: None,
                        },
                    )
                    .await;
            }
        }));
    }

    pub(super) fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Runs `n` futures made by `f` with at most `width` at once.
pub(super) async fn in_parallel<F, Fut, T>(n: usize, width: usize, f: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < n || !set.is_empty() {
        while next < n && set.len() < width {
            let fut = f(next);
            let i = next;
            set.spawn(async move { (i, fut.await) });
            next += 1;
        }
        if let Some(done) = set.join_next().await {
            let (i, r) = done?;
            out[i] = Some(r?);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// The controller process's CPU seconds so far and resident memory (MB).
pub(super) fn usage(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 (1-based): 12 and 13 after ')'.
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok((ticks / 100.0, rss_kb / 1024.0))
}
