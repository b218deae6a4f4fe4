//! The established-flow fast path: the tc/BPF program of
//! `bpf/fastpath.bpf.c` (embedded as built by `bpf/build`), loaded with
//! libbpf, attached at tc ingress of a host's VM ports and tunnels, and its
//! maps kept equal to a [`FastPathWant`].
//!
//! The program sits on each link's clsact ingress as one cls_bpf filter
//! (handle [`HANDLE`], priority [`PRIORITY`]; `tcbpf.rs` says why not tcx).
//! Nothing is pinned: the filters keep the program and its maps alive. A
//! new host agent takes over the program an earlier one left when it is
//! this build's ([`FastPath::adopt`]: found on a tunnel, tags compared,
//! maps read back); otherwise it loads its own, fills it and replaces the
//! filter on every link, the old program working with what it held until
//! then.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use libbpf_rs::query::{ProgInfoIter, ProgInfoQueryOptions};
use libbpf_rs::{MapCore, MapFlags, MapHandle, ObjectBuilder, Program};
pub use vpcip_dataplane::fastpath::{FastPathSeen, FastPathWant, FastPort};

use crate::SysError;
use crate::link::{Link, Net};
use vpcip_dataplane::links::{LinkState, Links};

/// The program, as `bpf/build` made it from `bpf/fastpath.bpf.c`.
pub const OBJECT: &[u8] = include_bytes!("../bpf/fastpath.bpf.o");
/// The tc filter's handle and priority on each link's ingress.
pub const HANDLE: u32 = 0x7670;
pub const PRIORITY: u16 = 1;
/// The program's name (as `tc filter show` gives it).
const NAME: &str = "vpcip_fastpath";
/// The sysctls the connection timeouts come from (seconds).
const TCP_TIMEOUT: &str = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established";
const UDP_TIMEOUT: &str = "/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream";
/// Conntrack takes packets beyond the last window it saw (it does not see
/// those the program takes around it).
const BE_LIBERAL: &str = "/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal";
const KIND_VM: u8 = 1;
const KIND_TUNNEL: u8 = 2;

type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

/// The maps' contents, as bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Contents {
    ports: Entries,
    allowed: Entries,
    dests: Entries,
}

/// The fast path's count of packets taken, readable from another thread
/// than the one that loaded it (None until it is loaded).
#[derive(Clone, Default)]
pub struct TakenCount(Arc<Mutex<Option<MapHandle>>>);

impl TakenCount {
    pub fn read(&self) -> Option<u64> {
        let map = self.0.lock().ok()?;
        sum_per_cpu(map.as_ref()?).ok()
    }
}

fn sum_per_cpu(map: &impl MapCore) -> Result<u64, SysError> {
    let per_cpu = map
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(bpf("read the fast path's count"))?
        .unwrap_or_default();
    Ok(per_cpu
        .iter()
        .filter_map(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
        .sum())
}

/// The maps the program has, by name.
const MAPS: [&str; 5] = ["vp_ports", "vp_allowed", "vp_dests", "vp_conf", "vp_taken"];

/// The program loaded (or found on the links, as an earlier agent left
/// it), with what was written into it.
pub struct FastPath {
    prog: OwnedFd,
    maps: BTreeMap<String, MapHandle>,
    written: Contents,
    /// The want last applied and the ifindex each name had then.
    applied: FastPathWant,
    index: BTreeMap<String, u32>,
    /// Links the program was attached to, by ifindex.
    attached: BTreeSet<u32>,
    /// Not applied yet.
    loaded_fresh: bool,
}

fn bpf(what: &'static str) -> impl FnOnce(libbpf_rs::Error) -> SysError {
    move |e| SysError::Io(what, std::io::Error::other(e.to_string()))
}

fn read_secs(path: &str) -> Result<u32, SysError> {
    let s = std::fs::read_to_string(path).map_err(SysError::io("read conntrack timeout"))?;
    s.trim()
        .parse::<u32>()
        .map_err(|_| SysError::Parse("conntrack timeout"))
}

/// The ifindexes (from `index`, by name) of every link `want` names.
fn index_of(want: &FastPathWant, index: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
    want.ports
        .keys()
        .chain(want.dests.values().flatten())
        .chain(want.ports.values().map(|p| &p.tunnel))
        .filter_map(|n| Some((n.clone(), *index.get(n)?)))
        .collect()
}

/// A namespace's links as the fast path's planner and `apply` take them:
/// each by name with its MAC (what `fastpath_for` reads of a link), and
/// their ifindexes by name.
pub fn links_of(links: &[Link]) -> (Links, BTreeMap<String, u32>) {
    let seen = links
        .iter()
        .map(|l| {
            let s = LinkState {
                mac: l.mac,
                ..Default::default()
            };
            (l.name.clone(), s)
        })
        .collect();
    (
        seen,
        links.iter().map(|l| (l.name.clone(), l.index)).collect(),
    )
}

/// What maps holding `c` say, by name over `names` (ifindex → name now):
/// entries that name a link no longer there are left out.
fn want_of(c: &Contents, names: &BTreeMap<u32, String>) -> FastPathWant {
    let name = |b: &[u8]| -> Option<String> {
        let i = u32::from_ne_bytes(b.get(..4)?.try_into().ok()?);
        names.get(&i).cloned()
    };
    let mut w = FastPathWant::default();
    for (k, v) in &c.ports {
        let (Some(port), Some(tunnel)) = (name(k), name(v)) else {
            continue;
        };
        let zone = v
            .get(4..6)
            .and_then(|z| z.try_into().ok())
            .map(u16::from_ne_bytes);
        let mac = v.get(6..12).and_then(|m| <[u8; 6]>::try_from(m).ok());
        let (Some(zone), Some(mac), Some(kind), Some(guarded)) = (zone, mac, v.get(12), v.get(13))
        else {
            continue;
        };
        let vm = (*kind == KIND_VM).then_some((mac, *guarded != 0));
        w.ports.insert(port, FastPort { tunnel, zone, vm });
    }
    for k in c.allowed.keys() {
        let addr = k.get(4..8).and_then(|a| <[u8; 4]>::try_from(a).ok());
        if let (Some(port), Some(a)) = (name(k), addr) {
            w.allowed.insert((port, Ipv4Addr::from(a)));
        }
    }
    for (k, v) in &c.dests {
        let mac = k.get(4..10).and_then(|m| <[u8; 6]>::try_from(m).ok());
        let (Some(tunnel), Some(mac)) = (name(k), mac) else {
            continue;
        };
        let out = if v.iter().all(|b| *b == 0) {
            None
        } else {
            match name(v) {
                Some(p) => Some(p),
                None => continue,
            }
        };
        w.dests.insert((tunnel, mac), out);
    }
    w
}

/// The maps' contents for `want`, over ifindexes `index`; names without an
/// ifindex are left out.
fn contents(want: &FastPathWant, index: &BTreeMap<String, u32>) -> Contents {
    let mut c = Contents::default();
    for (name, p) in &want.ports {
        let (Some(i), Some(t)) = (index.get(name), index.get(&p.tunnel)) else {
            continue;
        };
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&t.to_ne_bytes());
        v.extend_from_slice(&p.zone.to_ne_bytes());
        match p.vm {
            Some((mac, guarded)) => {
                v.extend_from_slice(&mac);
                v.push(KIND_VM);
                v.push(u8::from(guarded));
            }
            None => {
                v.extend_from_slice(&[0; 6]);
                v.push(KIND_TUNNEL);
                v.push(0);
            }
        }
        v.extend_from_slice(&[0; 2]);
        c.ports.insert(i.to_ne_bytes().to_vec(), v);
    }
    for (name, addr) in &want.allowed {
        if let Some(i) = index.get(name) {
            let mut k = i.to_ne_bytes().to_vec();
            k.extend_from_slice(&addr.octets());
            c.allowed.insert(k, vec![1]);
        }
    }
    for ((tunnel, mac), port) in &want.dests {
        let Some(t) = index.get(tunnel) else { continue };
        let out = match port {
            Some(p) => match index.get(p) {
                Some(i) => *i,
                None => continue,
            },
            None => 0,
        };
        let mut k = t.to_ne_bytes().to_vec();
        k.extend_from_slice(mac);
        k.extend_from_slice(&[0; 2]);
        c.dests.insert(k, out.to_ne_bytes().to_vec());
    }
    c
}

impl FastPath {
    /// Loads the program (in any namespace: its maps are keyed by the
    /// ifindexes of the namespace it is attached in). Fails where the
    /// kernel lacks BPF, BTF or conntrack's kfuncs.
    pub fn load() -> Result<FastPath, SysError> {
        let obj = ObjectBuilder::default()
            .open_memory(OBJECT)
            .map_err(bpf("open the fast path's BPF object"))?
            .load()
            .map_err(bpf("load the fast path's BPF program"))?;
        let prog = obj
            .progs()
            .next()
            .ok_or(SysError::Parse("the fast path's program"))?
            .as_fd()
            .try_clone_to_owned()
            .map_err(SysError::io("hold the fast path's program"))?;
        let mut maps = BTreeMap::new();
        for m in obj.maps() {
            let name = m.name().to_string_lossy().into_owned();
            if MAPS.contains(&name.as_str()) {
                let h = MapHandle::try_from(&m).map_err(bpf("hold a fast path map"))?;
                maps.insert(name, h);
            }
        }
        Ok(FastPath {
            prog,
            maps,
            written: Contents::default(),
            applied: FastPathWant::default(),
            index: BTreeMap::new(),
            attached: BTreeSet::new(),
            loaded_fresh: true,
        })
    }

    /// The fast path an earlier agent left on the links `tunnels`
    /// (ifindexes), when it is this program (the same instructions): its
    /// maps read back, over the namespace's links now (`names`, by
    /// ifindex). None when there is none, or another program (the next
    /// change then replaces it).
    pub fn adopt(
        net: &Net,
        tunnels: &[u32],
        names: &BTreeMap<u32, String>,
    ) -> Result<Option<FastPath>, SysError> {
        let Some(id) = tunnels
            .iter()
            .find_map(|i| net.ingress_bpf_id(*i, HANDLE, PRIORITY).ok().flatten())
        else {
            return Ok(None);
        };
        // Ours when its instructions are: ours loaded, the tags compared.
        let fresh = FastPath::load()?;
        let fresh_id =
            Program::id_from_fd(fresh.prog.as_fd()).map_err(bpf("read a program's id"))?;
        let opts = ProgInfoQueryOptions::default().include_map_ids(true);
        let (mut found, mut tag) = (None, None);
        for info in ProgInfoIter::with_query_opts(opts) {
            if info.id == fresh_id {
                tag = Some(info.tag.0);
            }
            if info.id == id {
                found = Some(info);
            }
        }
        drop(fresh);
        let Some(found) = found else { return Ok(None) };
        if tag != Some(found.tag.0) {
            return Ok(None);
        }
        let prog = Program::fd_from_id(id).map_err(bpf("hold the fast path's program"))?;
        let mut maps = BTreeMap::new();
        for m in &found.map_ids {
            let h = MapHandle::from_map_id(*m).map_err(bpf("hold a fast path map"))?;
            let name = h.name().to_string_lossy().into_owned();
            if MAPS.contains(&name.as_str()) {
                maps.insert(name, h);
            }
        }
        if maps.len() != MAPS.len() {
            return Ok(None);
        }
        let read = |name: &str| -> Result<Entries, SysError> {
            let m = &maps[name];
            let mut out = Entries::new();
            for k in m.keys() {
                let v = m
                    .lookup(&k, MapFlags::ANY)
                    .map_err(bpf("read a fast path map"))?;
                if let Some(v) = v {
                    out.insert(k, v);
                }
            }
            Ok(out)
        };
        let written = Contents {
            ports: read("vp_ports")?,
            allowed: read("vp_allowed")?,
            dests: read("vp_dests")?,
        };
        let applied = want_of(&written, names);
        let by_name: BTreeMap<String, u32> = names.iter().map(|(i, n)| (n.clone(), *i)).collect();
        let index = index_of(&applied, &by_name);
        let attached = written
            .ports
            .keys()
            .filter_map(|k| Some(u32::from_ne_bytes(k.get(..4)?.try_into().ok()?)))
            .filter(|i| names.contains_key(i))
            .collect();
        Ok(Some(FastPath {
            prog,
            maps,
            written,
            applied,
            index,
            attached,
            loaded_fresh: false,
        }))
    }

    fn map(&self, name: &str) -> Result<&MapHandle, SysError> {
        self.maps
            .get(name)
            .ok_or(SysError::Parse("a map of the fast path"))
    }

    /// What it holds, as the planner compares it: the last want applied,
    /// less whatever names a link that is gone or made anew since
    /// (`names`: the namespace's links now, by ifindex).
    pub fn seen(&self, names: &BTreeMap<u32, String>) -> FastPathWant {
        let same = |n: &String| {
            self.index
                .get(n)
                .is_some_and(|i| names.get(i).is_some_and(|now| now == n))
        };
        let mut w = self.applied.clone();
        w.ports.retain(|n, p| same(n) && same(&p.tunnel));
        w.allowed.retain(|(n, _)| same(n));
        w.dests
            .retain(|(t, _), p| same(t) && p.as_ref().is_none_or(&same));
        w
    }

    /// Makes the maps hold `want` and the program sit on each of its links,
    /// in `net`'s namespace (`index`: its links' ifindexes by name).
    /// A port's entry goes in after what it points to and out before it;
    /// the program is attached to a link once its entries are there.
    pub fn apply(
        &mut self,
        net: &Net,
        want: &FastPathWant,
        index: &BTreeMap<String, u32>,
    ) -> Result<usize, SysError> {
        std::fs::write(BE_LIBERAL, "1")
            .map_err(SysError::io("write nf_conntrack_tcp_be_liberal"))?;
        let conf = {
            let mut v = read_secs(TCP_TIMEOUT)?
                .saturating_mul(1000)
                .to_ne_bytes()
                .to_vec();
            v.extend_from_slice(&read_secs(UDP_TIMEOUT)?.saturating_mul(1000).to_ne_bytes());
            v
        };
        self.map("vp_conf")?
            .update(&0u32.to_ne_bytes(), &conf, MapFlags::ANY)
            .map_err(bpf("write the fast path's timeouts"))?;
        let new = contents(want, index);
        let mut n = 0;
        let old = std::mem::take(&mut self.written);
        let gone = |have: &Entries, want: &Entries| -> Vec<Vec<u8>> {
            have.keys()
                .filter(|k| !want.contains_key(*k))
                .cloned()
                .collect()
        };
        let changed = |have: &Entries, want: &Entries| -> Vec<(Vec<u8>, Vec<u8>)> {
            want.iter()
                .filter(|(k, v)| have.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        // The entries of one map that `new` adds or changes, or drops.
        let put = |map: &str, have: &Entries, want: &Entries, what: &'static str| {
            let m = self.map(map)?;
            let todo = changed(have, want);
            for (k, v) in &todo {
                m.update(k, v, MapFlags::ANY).map_err(bpf(what))?;
            }
            Ok::<_, SysError>(todo.len())
        };
        let remove = |map: &str, have: &Entries, want: &Entries, what: &'static str| {
            let m = self.map(map)?;
            let todo = gone(have, want);
            for k in &todo {
                m.delete(k).map_err(bpf(what))?;
            }
            Ok::<_, SysError>(todo.len())
        };
        let (o, w) = (&old, &new);
        n += remove("vp_ports", &o.ports, &w.ports, "remove a fast path port")?;
        n += put(
            "vp_allowed",
            &o.allowed,
            &w.allowed,
            "add a fast path address",
        )?;
        n += put(
            "vp_dests",
            &o.dests,
            &w.dests,
            "add a fast path destination",
        )?;
        n += remove(
            "vp_allowed",
            &o.allowed,
            &w.allowed,
            "remove a fast path address",
        )?;
        n += remove(
            "vp_dests",
            &o.dests,
            &w.dests,
            "remove a fast path destination",
        )?;
        n += put("vp_ports", &o.ports, &w.ports, "add a fast path port")?;
        self.written = new;
        // On the links, then off those no longer in it (a link that is
        // gone took its filter with it).
        let links: BTreeSet<u32> = want
            .ports
            .keys()
            .filter_map(|l| index.get(l).copied())
            .collect();
        let on: Vec<u32> = links.difference(&self.attached).copied().collect();
        if !on.is_empty() {
            // Counted as attached first: a batch that fails halfway is
            // taken off again by `detach_all`.
            self.attached.extend(&on);
            net.attach_ingress_bpf(&on, self.prog.as_raw_fd(), NAME, HANDLE, PRIORITY)?;
            n += on.len();
        }
        let live: BTreeSet<u32> = index.values().copied().collect();
        // A first apply also takes an earlier agent's program off the links
        // no longer in it (its maps are not ours to correct).
        let had = if self.loaded_fresh {
            self.loaded_fresh = false;
            &live
        } else {
            &self.attached
        };
        let off: Vec<u32> = had
            .difference(&links)
            .filter(|i| live.contains(*i))
            .copied()
            .collect();
        if !off.is_empty() {
            net.detach_ingress_bpf(&off, HANDLE, PRIORITY)?;
            n += off.len();
        }
        self.attached = links;
        self.applied = want.clone();
        self.index = index_of(want, index);
        Ok(n)
    }

    /// Takes the program off every link it was put on (those still there),
    /// for a fast path given up: what it holds may no longer be right.
    pub fn detach_all(&mut self, net: &Net) -> Result<(), SysError> {
        let all: Vec<u32> = std::mem::take(&mut self.attached).into_iter().collect();
        net.detach_ingress_bpf(&all, HANDLE, PRIORITY)
    }

    /// Packets taken around the bridge since it was loaded, all CPUs.
    pub fn taken(&self) -> Result<u64, SysError> {
        sum_per_cpu(self.map("vp_taken")?)
    }

    /// Makes `count` read this program's count.
    pub fn share_taken(&self, count: &TakenCount) -> Result<(), SysError> {
        let handle = MapHandle::try_from(self.map("vp_taken")?)
            .map_err(bpf("share the fast path's count"))?;
        if let Ok(mut c) = count.0.lock() {
            *c = Some(handle);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn the_maps_bytes_are_the_programs_structs() {
        let mut want = FastPathWant::default();
        want.ports.insert(
            "t1".into(),
            FastPort {
                tunnel: "vx10".into(),
                zone: 0x0102,
                vm: Some(([0xfa, 0x16, 0x3e, 0, 0, 1], true)),
            },
        );
        want.ports.insert(
            "vx10".into(),
            FastPort {
                tunnel: "vx10".into(),
                zone: 0x0102,
                vm: None,
            },
        );
        // Not plugged: left out.
        want.ports.insert(
            "t9".into(),
            FastPort {
                tunnel: "vx10".into(),
                zone: 1,
                vm: Some(([0; 6], false)),
            },
        );
        want.allowed
            .insert(("t1".into(), Ipv4Addr::new(10, 0, 0, 1)));
        want.dests.insert(
            ("vx10".into(), [0xfa, 0x16, 0x3e, 0, 0, 1]),
            Some("t1".into()),
        );
        want.dests.insert(("vx10".into(), [2, 0, 0, 0, 0, 1]), None);
        let index = BTreeMap::from([("t1".to_string(), 5u32), ("vx10".to_string(), 3u32)]);
        let c = contents(&want, &index);
        let ne = |v: u32| v.to_ne_bytes().to_vec();
        let port = |t: u32, zone: u16, mac: [u8; 6], kind: u8, guarded: u8| {
            let mut v = ne(t);
            v.extend_from_slice(&zone.to_ne_bytes());
            v.extend_from_slice(&mac);
            v.extend_from_slice(&[kind, guarded, 0, 0]);
            v
        };
        assert_eq!(
            c.ports,
            Entries::from([
                (
                    ne(5),
                    port(3, 0x0102, [0xfa, 0x16, 0x3e, 0, 0, 1], KIND_VM, 1)
                ),
                (ne(3), port(3, 0x0102, [0; 6], KIND_TUNNEL, 0)),
            ])
        );
        assert!(c.ports.values().all(|v| v.len() == 16));
        let mut src = ne(5);
        src.extend_from_slice(&[10, 0, 0, 1]);
        assert_eq!(c.allowed, Entries::from([(src, vec![1])]));
        let dst = |mac: [u8; 6]| {
            let mut k = ne(3);
            k.extend_from_slice(&mac);
            k.extend_from_slice(&[0, 0]);
            k
        };
        assert_eq!(
            c.dests,
            Entries::from([
                (dst([0xfa, 0x16, 0x3e, 0, 0, 1]), ne(5)),
                (dst([2, 0, 0, 0, 0, 1]), ne(0)),
            ])
        );
    }
}
