//! The watch: each agent gets its desired state once, as keyed entries,
//! then only the entries that changed, resumed from the revision it has.
//!
//! Every committed write logs the resources it wrote under the revision it
//! made (`changes`, in the same transaction). One task per controller
//! follows that log — woken by this process's commits and, on PostgreSQL,
//! by every other controller's (LISTEN/NOTIFY) — and applies it to an
//! in-memory copy of the resources ([`world::Cache`]). For each batch it
//! finds what the changed resources concern (VPC routers on the gateways,
//! hosts with a port in a changed subnet or group, …), computes only those
//! parts from the slice of the world they depend on, and diffs them with
//! what each concerned agent has: the changes go to that agent's history
//! and wake its watchers. A write that concerns no agent wakes none and
//! costs no agent anything.
//!
//! Every controller computes the same entries from the same log, so an
//! agent resumes from its revision on any of them. An agent whose revision
//! is older than what its history keeps (or a controller that just
//! started) gets a snapshot. The agents still reconcile level-triggered
//! against the kernel: the watch feeds their desired state, the resync
//! stays.

mod slice;
pub(crate) mod world;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vpcip_model::desired::{
    Agent, AgentRole, Change, Desired, Entries, WatchBatch, nat_prefix, router_key,
};

use crate::{Store, StoreError};
use world::{Cache, Dirty};

/// Batches of changes one agent's history keeps: an agent further behind
/// gets a snapshot.
const HISTORY: usize = 1024;

/// Revisions of the change log kept in the database: a controller further
/// behind loads the whole world again.
const KEEP_LOG: i64 = 20_000;

/// One agent's entries and their recent changes.
struct View {
    role: AgentRole,
    entries: Entries,
    /// (revision, the changes it made), oldest first.
    history: VecDeque<(i64, Vec<Change>)>,
    /// The history holds every change after this revision.
    floor: i64,
    /// Changes in the history.
    kept: usize,
    /// The last revision that changed this agent's entries.
    latest: i64,
    notify: Arc<tokio::sync::Notify>,
}

/// The watch's state in one controller.
pub struct Watch {
    views: Mutex<HashMap<String, Arc<Mutex<View>>>>,
    /// The revision every view is current at (-1 before the first load);
    /// published after the views are updated.
    revision: tokio::sync::watch::Sender<i64>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("revision", &*self.revision.borrow())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The resources of the change log after a revision.
struct LogRead {
    revision: i64,
    floor: i64,
    rows: Vec<(String, String, Option<String>)>,
}

impl Watch {
    fn view(&self, agent_id: &str) -> Option<Arc<Mutex<View>>> {
        lock(&self.views).get(agent_id).cloned()
    }

    /// The last revision that changed agent `agent_id`'s desired state,
    /// once the watch runs.
    pub fn latest(&self, agent_id: &str) -> Option<i64> {
        self.view(agent_id).map(|v| lock(&v).latest)
    }

    /// Sets agent `agent`'s entries to `new` (over the keys under
    /// `prefixes`; all with an empty prefix) and applies `more` (keys
    /// outside them), recording the difference at `revision`.
    fn update(
        &self,
        agent: &Agent,
        revision: i64,
        new: &Entries,
        prefixes: &[String],
        more: &[Change],
    ) {
        let view = {
            let mut views = lock(&self.views);
            views
                .entry(agent.id.clone())
                .or_insert_with(|| {
                    Arc::new(Mutex::new(View {
                        role: agent.role,
                        entries: Entries::default(),
                        history: VecDeque::new(),
                        floor: revision,
                        kept: 0,
                        latest: revision,
                        notify: Arc::new(tokio::sync::Notify::new()),
                    }))
                })
                .clone()
        };
        let mut v = lock(&view);
        let mut changes = v.entries.diff_under(new, prefixes);
        changes.extend(
            more.iter()
                .filter(|c| v.entries.map.get(&c.key) != c.entry.as_ref())
                .cloned(),
        );
        if changes.is_empty() {
            return;
        }
        let batch = WatchBatch {
            revision,
            role: v.role,
            reset: false,
            changes,
        };
        v.entries.apply(&batch);
        v.kept += batch.changes.len();
        v.history.push_back((revision, batch.changes));
        // A history longer than a snapshot is worth less than the
        // snapshot: an agent that far behind gets one.
        let most = v.entries.map.len().max(8);
        while v.history.len() > HISTORY || v.kept > most {
            let Some((r, dropped)) = v.history.pop_front() else {
                break;
            };
            v.kept -= dropped.len();
            v.floor = r;
        }
        v.latest = revision;
        v.notify.notify_waiters();
    }

    /// What agent `agent_id` gets after `since` (None: a snapshot): the
    /// changes since then once there are any, or an empty batch at the
    /// current revision after `wait`.
    pub async fn next(
        &self,
        agent_id: &str,
        since: Option<i64>,
        wait: Duration,
    ) -> Option<WatchBatch> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let view = self.view(agent_id)?;
            let notify = lock(&view).notify.clone();
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let current = *self.revision.borrow();
            {
                let v = lock(&view);
                let revision = current.max(v.latest);
                match since {
                    Some(s) if s >= v.floor && v.latest > s => {
                        let mut last: BTreeMap<&str, &Change> = BTreeMap::new();
                        for (_, changes) in v.history.iter().filter(|(r, _)| *r > s) {
                            for c in changes {
                                last.insert(c.key.as_str(), c);
                            }
                        }
                        return Some(WatchBatch {
                            revision,
                            role: v.role,
                            reset: false,
                            changes: last.into_values().cloned().collect(),
                        });
                    }
                    Some(s) if s >= v.floor => {
                        if tokio::time::Instant::now() >= deadline {
                            return Some(WatchBatch {
                                revision: revision.max(s),
                                role: v.role,
                                reset: false,
                                changes: Vec::new(),
                            });
                        }
                    }
                    _ => {
                        return Some(WatchBatch {
                            revision,
                            role: v.role,
                            reset: true,
                            changes: v
                                .entries
                                .map
                                .iter()
                                .map(|(k, e)| Change {
                                    key: k.clone(),
                                    entry: Some(e.clone()),
                                })
                                .collect(),
                        });
                    }
                }
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

impl Store {
    /// This controller's watch, started on first use: the task following
    /// the change log runs from then on.
    pub fn watch(&self) -> Arc<Watch> {
        self.watch
            .get_or_init(|| {
                let watch = Arc::new(Watch {
                    views: Mutex::new(HashMap::new()),
                    revision: tokio::sync::watch::channel(-1).0,
                });
                tokio::spawn(follow(self.clone(), watch.clone()));
                watch
            })
            .clone()
    }

    /// The watch, if it was started.
    pub fn watch_running(&self) -> Option<Arc<Watch>> {
        self.watch.get().cloned()
    }

    /// The watch once it has caught up with the store's revision at the
    /// call (or after `wait`).
    pub async fn watch_current(&self, wait: Duration) -> Result<Arc<Watch>, StoreError> {
        let watch = self.watch();
        let now = self.db.revision().await?;
        let mut rx = watch.revision.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|r| *r >= now)).await;
        Ok(watch)
    }

    /// Agent `key`'s next batch of the watch after `since` (see
    /// [`Watch::next`]); who may ask is checked first.
    pub async fn watch_agent(
        &self,
        scope: &crate::Scope,
        key: &str,
        since: Option<i64>,
        wait: Duration,
    ) -> Result<WatchBatch, StoreError> {
        let agent = self.agent(scope, key).await?;
        let watch = self.watch_current(Duration::from_secs(10)).await?;
        watch.next(&agent.id, since, wait).await.ok_or_else(|| {
            StoreError::Unavailable("the watch has not caught up with the store yet".into())
        })
    }

    /// The change log after `after`, with the revision it reaches and the
    /// log's floor: one statement, so one snapshot (and on PostgreSQL one
    /// round trip, where a read transaction takes four).
    async fn read_log(&self, after: i64) -> Result<LogRead, StoreError> {
        let found = self
            .db
            .read_once(
                "SELECT h.value, f.value, c.kind, c.id, c.doc
                 FROM revision AS h
                 JOIN revision AS f ON f.id = 2
                 LEFT JOIN changes AS c ON c.rev > $1 AND c.rev <= h.value
                 WHERE h.id = 1
                 ORDER BY c.rev",
                &[after.into()],
            )
            .await?;
        let Some(first) = found.first() else {
            return Err(StoreError::Corrupt("no revision rows".into()));
        };
        let (revision, floor) = (first.int(0)?, first.int(1)?);
        let mut rows = Vec::with_capacity(found.len());
        for r in &found {
            if let Some(kind) = r.opt_text(2)? {
                rows.push((kind, r.text(3)?, r.opt_text(4)?));
            }
        }
        Ok(LogRead {
            revision,
            floor,
            rows,
        })
    }

    /// Every resource agents' states come from, with the revision.
    async fn read_world(&self) -> Result<(i64, Cache), StoreError> {
        let mut tx = self.db.begin_read().await?;
        let revision = tx.revision().await?;
        let kinds: Vec<String> = world::WATCHED
            .iter()
            .map(|k| format!("'{}'", k.key()))
            .collect();
        let rows = tx
            .rows(
                &format!(
                    "SELECT kind, id, doc FROM resources WHERE kind IN ({})",
                    kinds.join(", ")
                ),
                &[],
            )
            .await?;
        tx.commit().await?;
        let mut cache = Cache::default();
        let mut dirty = Dirty {
            all: true,
            ..Dirty::default()
        };
        for r in rows {
            cache.apply(&r.text(0)?, &r.text(1)?, Some(&r.text(2)?), &mut dirty)?;
        }
        Ok((revision, cache))
    }

    /// Computes what `dirty` touched for every concerned agent and updates
    /// their views at `revision`.
    fn recompute(&self, watch: &Watch, cache: &Cache, dirty: &Dirty, revision: i64) {
        // What the gateways' changed part is computed from, and the keys it
        // covers, once for all of them: the whole world (every key) when
        // everything changed.
        let mut memo = slice::HostMemo::default();
        let serving = cache.agents.values().any(|a| a.role == AgentRole::Gateway);
        // Single EIPs' NAT entries (their routers otherwise unchanged).
        let nats = if serving {
            cache.nat_changes(dirty)
        } else {
            Vec::new()
        };
        let gateways = if !serving {
            None
        } else if dirty.all {
            Some((cache.whole(), None, vec![String::new()]))
        } else {
            (!dirty.routers.is_empty()).then(|| {
                let keys = dirty
                    .routers
                    .iter()
                    .flat_map(|v| [router_key(v), nat_prefix(v)])
                    .collect();
                let (slice, vteps) = cache.routers(&dirty.routers, &mut memo);
                (slice, Some(vteps), keys)
            })
        };
        for agent in cache.agents.values() {
            match agent.role {
                AgentRole::Gateway => {
                    let Some((slice, vteps, prefixes)) = &gateways else {
                        if !nats.is_empty() {
                            watch.update(agent, revision, &Entries::default(), &[], &nats);
                        }
                        continue;
                    };
                    let world = slice.world(&self.dhcp);
                    let mut state = match vteps {
                        Some(v) => world.gateway_with(agent, v),
                        None => world.gateway(agent),
                    };
                    state.infra_allow.clone_from(&self.infra_allow);
                    let new = Entries::of(&Desired {
                        revision,
                        gateway: Some(state),
                        host: None,
                    });
                    watch.update(agent, revision, &new, prefixes, &nats);
                }
                AgentRole::Host if dirty.all || dirty.hosts.contains(&agent.name) => {
                    let new = Entries::of(&Desired {
                        revision,
                        gateway: None,
                        host: Some(cache.host(agent, &self.dhcp, &mut memo)),
                    });
                    watch.update(agent, revision, &new, &[String::new()], &[]);
                }
                _ => {}
            }
        }
        if dirty.all {
            lock(&watch.views).retain(|id, _| cache.agents.contains_key(id));
        }
    }

    /// Brings the watch from `cache` at `revision` to the store's latest.
    async fn catch_up(
        &self,
        watch: &Watch,
        state: &mut Option<(i64, Cache)>,
    ) -> Result<(), StoreError> {
        let (revision, cache) = match state.take() {
            Some((revision, mut cache)) => {
                let log = self.read_log(revision).await?;
                if log.floor > revision {
                    // Behind the pruned log: everything again.
                    tracing::warn!(
                        revision,
                        floor = log.floor,
                        "the watch is behind the change log: loading the whole world again"
                    );
                    let (revision, cache) = self.read_world().await?;
                    let all = Dirty {
                        all: true,
                        ..Dirty::default()
                    };
                    self.recompute(watch, &cache, &all, revision);
                    (revision, cache)
                } else {
                    let mut dirty = Dirty::default();
                    for (kind, id, doc) in &log.rows {
                        cache.apply(kind, id, doc.as_deref(), &mut dirty)?;
                    }
                    if !dirty.is_empty() {
                        self.recompute(watch, &cache, &dirty, log.revision);
                    }
                    if log.revision - log.floor > KEEP_LOG {
                        self.prune_log(log.revision - KEEP_LOG / 2).await?;
                    }
                    (log.revision, cache)
                }
            }
            None => {
                let started = std::time::Instant::now();
                let (revision, cache) = self.read_world().await?;
                let loaded = started.elapsed();
                let all = Dirty {
                    all: true,
                    ..Dirty::default()
                };
                self.recompute(watch, &cache, &all, revision);
                tracing::info!(
                    revision,
                    agents = cache.agents.len(),
                    load_ms = loaded.as_millis(),
                    compute_ms = (started.elapsed() - loaded).as_millis(),
                    "the watch has every agent's desired state"
                );
                (revision, cache)
            }
        };
        watch.revision.send_replace(revision);
        *state = Some((revision, cache));
        Ok(())
    }

    /// Drops the change log up to `upto` (a reader behind it loads the
    /// whole world instead). Not a change: no revision.
    async fn prune_log(&self, upto: i64) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        tx.write_quiet(
            "UPDATE revision SET value = $1 WHERE id = 2 AND value < $1",
            &[upto.into()],
        )
        .await?;
        tx.write_quiet("DELETE FROM changes WHERE rev <= $1", &[upto.into()])
            .await?;
        tx.commit().await
    }
}

/// Follows the change log for as long as the process runs.
async fn follow(store: Store, watch: Arc<Watch>) {
    let mut changes = store.db.subscribe();
    let mut state: Option<(i64, Cache)> = None;
    let mut failing = false;
    loop {
        changes.borrow_and_update();
        match store.catch_up(&watch, &mut state).await {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "the watch could not read the change log; retrying");
                }
                failing = true;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        // Woken by every commit; a slow tick in case a wake was lost.
        let _ = tokio::time::timeout(Duration::from_secs(5), changes.changed()).await;
    }
}
