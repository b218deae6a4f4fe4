//! BGP through a local BIRD 2 (no Rust BGP speaker is mature enough to
//! carry a cloud's EIPs: netgauze's is unfinished, zettabgp only parses).
//! The agent owns BIRD's configuration file: the sessions to the
//! physical routers (BFD, graceful restart, nothing imported) and a
//! kernel protocol that learns the node's announcement table
//! ([`vpcip_dataplane::gateway::EXPORT_TABLE`], which the reconciler keeps
//! over netlink), announced with the node as next hop. It reloads BIRD
//! through its control socket when the configuration changes, and reads
//! the sessions' state from it.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vpcip_dataplane::gateway::EXPORT_TABLE;
use vpcip_model::BgpConfig;
use vpcip_model::desired::BgpSession;

/// Where the local BIRD is.
#[derive(Debug, Clone)]
pub struct Bird {
    /// Its control socket (`bird -s`).
    pub socket: PathBuf,
    /// The configuration file it was started with (`bird -c`), which the
    /// agent writes.
    pub config: PathBuf,
}

/// The protocol name of the session to `peer`.
fn protocol(peer: Ipv4Addr) -> String {
    format!("vpcip_{}", peer.to_string().replace('.', "_"))
}

/// BIRD's configuration for a gateway at `router_id` with `bgp`.
pub fn render(router_id: Ipv4Addr, bgp: &BgpConfig) -> String {
    let mut c = format!(
        "# Written by vpcip's gateway agent; changes here are overwritten.\n\
         router id {router_id};\n\
         protocol device {{}}\n\
         # What the node announces: the agent keeps it in kernel table {EXPORT_TABLE}.\n\
         protocol kernel vpcip_announce {{\n\
         \x20 ipv4 {{ import all; export none; }};\n\
         \x20 learn;\n\
         \x20 kernel table {EXPORT_TABLE};\n\
         \x20 netlink rx buffer 268435456;\n\
         \x20 scan time 10;\n\
         }}\n"
    );
    if bgp.bfd {
        c.push_str(
            "protocol bfd vpcip_bfd {\n  interface \"*\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };\n}\n",
        );
    }
    for p in &bgp.peers {
        c.push_str(&format!(
            "protocol bgp {name} {{\n\
             \x20 local {router_id} as {local};\n\
             \x20 neighbor {ip} as {peer_as};\n\
             \x20 bfd {bfd};\n\
             \x20 graceful restart on;\n\
             \x20 connect delay time 1;\n\
             \x20 # After a failure, try again within seconds, not minutes.\n\
             \x20 error wait time 1, 30;\n\
             \x20 # A gateway learns nothing from the physical network.\n\
             \x20 ipv4 {{ import none; export where proto = \"vpcip_announce\"; next hop self; }};\n\
             }}\n",
            name = protocol(p.ip),
            local = bgp.local_as,
            ip = p.ip,
            peer_as = p.peer_as,
            bfd = if bgp.bfd { "on" } else { "off" },
        ));
    }
    c
}

/// Counts each session's drops (established → anything else) over the
/// last [`vpcip_model::desired::BGP_FLAP_WINDOW_SECONDS`].
#[derive(Debug, Default)]
pub struct Flaps {
    last: std::collections::BTreeMap<Ipv4Addr, String>,
    drops: std::collections::BTreeMap<Ipv4Addr, std::collections::VecDeque<std::time::Instant>>,
}

impl Flaps {
    /// Notes what `sessions` say now and fills in their drops.
    pub fn observe(&mut self, sessions: &mut [BgpSession], now: std::time::Instant) {
        let window = Duration::from_secs(vpcip_model::desired::BGP_FLAP_WINDOW_SECONDS);
        for s in sessions.iter_mut() {
            let was = self.last.insert(s.peer, s.state.clone());
            let d = self.drops.entry(s.peer).or_default();
            if was.as_deref() == Some("established") && s.state != "established" {
                d.push_back(now);
            }
            while d.front().is_some_and(|t| now.duration_since(*t) > window) {
                d.pop_front();
            }
            s.drops = u32::try_from(d.len()).unwrap_or(u32::MAX);
        }
    }
}

/// One command on BIRD's control socket: the reply's lines (code, text).
fn command(socket: &Path, cmd: &str) -> Result<Vec<(u16, String)>, String> {
    let s = UnixStream::connect(socket)
        .map_err(|e| format!("BIRD's control socket {}: {e}", socket.display()))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
    let mut line = String::new();
    // The greeting: "0001 BIRD 2.0.12 ready."
    r.read_line(&mut line)
        .map_err(|e| format!("BIRD's greeting: {e}"))?;
    (&s).write_all(format!("{cmd}\n").as_bytes())
        .map_err(|e| format!("send {cmd:?} to BIRD: {e}"))?;
    let mut out = Vec::new();
    let mut code = 0u16;
    loop {
        line.clear();
        let n = r
            .read_line(&mut line)
            .map_err(|e| format!("BIRD's answer to {cmd:?}: {e}"))?;
        if n == 0 {
            return Err(format!("BIRD closed the socket answering {cmd:?}"));
        }
        let l = line.trim_end_matches('\n');
        // "dddd-text" continues, "dddd text" ends, " text" continues the
        // last code.
        let (c, sep, text) = match (l.get(..4).and_then(|d| d.parse::<u16>().ok()), l.get(4..5)) {
            (Some(c), Some(sep)) => (c, sep, l.get(5..).unwrap_or("")),
            _ => (code, "-", l.strip_prefix(' ').unwrap_or(l)),
        };
        code = c;
        out.push((c, text.to_string()));
        if sep == " " {
            return Ok(out);
        }
    }
}

impl Bird {
    /// Writes `text` as BIRD's configuration if it differs and reloads
    /// BIRD; an error names what BIRD refused.
    pub fn ensure(&self, text: &str) -> Result<bool, String> {
        let same = std::fs::read_to_string(&self.config).is_ok_and(|t| t == text);
        if same {
            return Ok(false);
        }
        let tmp = self.config.with_extension("vpcip-new");
        std::fs::write(&tmp, text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &self.config)
            .map_err(|e| format!("write {}: {e}", self.config.display()))?;
        let reply = command(&self.socket, "configure")?;
        match reply.last() {
            // 0003 Reconfigured, 0004 in progress, 0018 confirmed,
            // 0019 nothing to do.
            Some((3 | 4 | 18 | 19 | 20, _)) => Ok(true),
            _ => Err(format!(
                "BIRD refused its configuration {}: {}",
                self.config.display(),
                reply
                    .iter()
                    .map(|(_, t)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
        }
    }

    /// The sessions to `peers`, as BIRD tells them.
    pub fn sessions(&self, peers: &[Ipv4Addr]) -> Result<Vec<BgpSession>, String> {
        let reply = command(&self.socket, "show protocols all")?;
        let text: Vec<&str> = reply.iter().map(|(_, t)| t.as_str()).collect();
        Ok(peers.iter().map(|p| parse_session(*p, &text)).collect())
    }
}

/// One session out of `show protocols all`.
fn parse_session(peer: Ipv4Addr, lines: &[&str]) -> BgpSession {
    let name = protocol(peer);
    let mut s = BgpSession {
        peer,
        state: "down".into(),
        info: "not in BIRD's configuration yet".into(),
        received: 0,
        exported: 0,
        drops: 0,
    };
    let Some(start) = lines
        .iter()
        .position(|l| l.split_whitespace().next() == Some(name.as_str()))
    else {
        return s;
    };
    // Its block runs to the next protocol's line (not indented).
    let head: Vec<&str> = lines[start].split_whitespace().collect();
    s.info = head.get(5..).map(|w| w.join(" ")).unwrap_or_default();
    for l in lines[start + 1..]
        .iter()
        .take_while(|l| l.is_empty() || l.starts_with(' '))
    {
        let t = l.trim();
        if let Some(v) = t.strip_prefix("BGP state:") {
            s.state = v.trim().to_ascii_lowercase();
        } else if let Some(v) = t.strip_prefix("Last error:") {
            s.info = v.trim().to_string();
        } else if let Some(v) = t.strip_prefix("Routes:") {
            // "Routes: 0 imported, 3 exported, 0 preferred"
            for part in v.split(',') {
                let w: Vec<&str> = part.split_whitespace().collect();
                if let [n, "exported"] = w[..] {
                    s.exported = n.parse().unwrap_or(0);
                }
            }
        } else if let Some(v) = t.strip_prefix("Import updates:") {
            // received, rejected, filtered, ignored, accepted
            s.received = v
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    if s.state == "established" && s.info == "Established" {
        s.info.clear();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "Name       Proto      Table      State  Since         Info
vpcip_192_0_2_1 BGP        ---        up     07:58:12.204  Established
  BGP state:          Established
    Neighbor address: 192.0.2.1
  Channel ipv4
    State:          UP
    Routes:         0 imported, 3 exported, 0 preferred
    Route change stats:     received   rejected   filtered    ignored   accepted
      Import updates:              2          0          2          0          0
      Export updates:              3          0          0        ---          3
vpcip_192_0_2_9 BGP        ---        start  07:58:12.204  Active        Socket: Connection refused
  BGP state:          Active
    Neighbor address: 192.0.2.9
    Last error:       Socket: Connection refused
";

    #[test]
    fn sessions_are_read_from_show_protocols() {
        let lines: Vec<&str> = SHOW.lines().collect();
        let up = parse_session("192.0.2.1".parse().unwrap(), &lines);
        assert_eq!(up.state, "established");
        assert_eq!((up.exported, up.received), (3, 2));
        assert_eq!(up.info, "");
        let down = parse_session("192.0.2.9".parse().unwrap(), &lines);
        assert_eq!(down.state, "active");
        assert_eq!(down.info, "Socket: Connection refused");
        let none = parse_session("192.0.2.7".parse().unwrap(), &lines);
        assert_eq!(none.state, "down");
    }

    #[test]
    fn drops_are_counted_over_the_window() {
        let peer: Ipv4Addr = "192.0.2.1".parse().unwrap();
        let at = |state: &str| BgpSession {
            peer,
            state: state.into(),
            info: String::new(),
            received: 0,
            exported: 0,
            drops: 0,
        };
        let mut f = Flaps::default();
        let t0 = std::time::Instant::now();
        let mut seen = 0;
        for (i, state) in [
            "established",
            "active",
            "established",
            "idle",
            "established",
        ]
        .iter()
        .enumerate()
        {
            let mut s = [at(state)];
            f.observe(&mut s, t0 + Duration::from_secs(i as u64));
            seen = s[0].drops;
        }
        assert_eq!(seen, 2);
        let mut s = [at("established")];
        f.observe(&mut s, t0 + Duration::from_secs(700));
        assert_eq!(s[0].drops, 0, "older than the window");
    }

    #[test]
    fn the_config_has_a_session_per_peer_with_bfd_and_graceful_restart() {
        let c = render(
            "192.0.2.21".parse().unwrap(),
            &BgpConfig {
                local_as: 64513,
                peers: vec![vpcip_model::BgpPeer {
                    ip: "192.0.2.1".parse().unwrap(),
                    peer_as: 64512,
                }],
                bfd: true,
            },
        );
        assert!(c.contains("router id 192.0.2.21;"));
        assert!(c.contains("protocol bgp vpcip_192_0_2_1 {"));
        assert!(c.contains("neighbor 192.0.2.1 as 64512;"));
        assert!(c.contains("local 192.0.2.21 as 64513;"));
        assert!(c.contains("bfd on;") && c.contains("protocol bfd"));
        assert!(c.contains("graceful restart on;"));
        assert!(c.contains(&format!("kernel table {EXPORT_TABLE};")));
        assert!(c.contains("import none;"));
    }
}
