//! The gateway agents' BGP task: the local BIRD's configuration and the
//! sessions it reports.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use crate::{bgp, metrics};

/// What the BGP task last learnt: the sessions, or why there are none.
pub(crate) type BgpStatus =
    Arc<std::sync::Mutex<(Vec<vpcip_model::desired::BgpSession>, Option<String>)>>;

/// Keeps the local BIRD's configuration as the desired state says and
/// reads its sessions every second.
pub(crate) async fn run_bgp(
    bird: Option<bgp::Bird>,
    underlay: Ipv4Addr,
    want: tokio::sync::watch::Receiver<Option<vpcip_model::BgpConfig>>,
    status: BgpStatus,
    metrics: Arc<metrics::AgentMetrics>,
    changed: Arc<tokio::sync::Notify>,
) {
    let flaps = Arc::new(std::sync::Mutex::new(bgp::Flaps::default()));
    loop {
        let bgp = want.borrow().clone();
        let flaps = flaps.clone();
        let bird = bird.clone();
        let got = tokio::task::spawn_blocking(move || -> (Vec<_>, Option<String>) {
            let (Some(bird), Some(bgp)) = (bird, bgp) else {
                return (vec![], None);
            };
            let text = bgp::render(underlay, &bgp);
            if let Err(e) = bird.ensure(&text) {
                return (vec![], Some(e));
            }
            let peers: Vec<Ipv4Addr> = bgp.peers.iter().map(|p| p.ip).collect();
            match bird.sessions(&peers) {
                Ok(mut s) => {
                    if let Ok(mut f) = flaps.lock() {
                        f.observe(&mut s, std::time::Instant::now());
                    }
                    (s, None)
                }
                Err(e) => (vec![], Some(e)),
            }
        })
        .await;
        if let Ok((sessions, error)) = got {
            metrics.bgp_up.clear();
            metrics.bgp_announced.clear();
            for s in &sessions {
                let l = metrics::PeerLabels {
                    peer: s.peer.to_string(),
                };
                metrics
                    .bgp_up
                    .get_or_create(&l)
                    .set(i64::from(s.state == "established"));
                metrics
                    .bgp_announced
                    .get_or_create(&l)
                    .set(i64::try_from(s.exported).unwrap_or(i64::MAX));
            }
            if let Ok(mut st) = status.lock() {
                // A session came up or went down: report it now.
                let states = |s: &[vpcip_model::desired::BgpSession]| -> Vec<(Ipv4Addr, String)> {
                    s.iter().map(|b| (b.peer, b.state.clone())).collect()
                };
                if states(&st.0) != states(&sessions) || st.1 != error {
                    changed.notify_one();
                }
                *st = (sessions, error);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
