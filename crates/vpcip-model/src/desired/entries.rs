//! The desired state as keyed entries, and the changes the watch sends.
//!
//! An agent's desired state is split into small entries with stable keys:
//! a gateway's settings (`gateway`), each VPC router without its NAT
//! (`router/<vpc>`), each EIP's NAT (`nat/<vpc>/<eip>`); a host's L2
//! domains (`domain/<vni>`), ports (`port/<nic>`) and compiled security
//! groups (`group/<id>`). The watch (`GET /v1/agents/{id}/watch`) sends a
//! snapshot of them when an agent connects, then only the entries that
//! changed; [`Entries::desired`] puts the whole [`Desired`] together again,
//! equal to the one computed from the store at that revision.

use super::*;

/// A gateway's desired state without its routers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
pub struct GatewaySettings {
    #[schema(value_type = Vec<String>)]
    pub eip_segments: Vec<Ipv4Net>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub infrastructure: Vec<Ipv4Net>,
    #[serde(default)]
    pub infra_allow: Vec<InfraService>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub snat_ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub cluster: Cluster,
}

/// One EIP's NAT on the router of VPC `vpc_id`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RouterNat {
    pub vpc_id: String,
    pub nat: NatEntry,
}

/// One piece of an agent's desired state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    Gateway(GatewaySettings),
    /// A VPC router; its `nat` is empty (each EIP's is its own entry).
    Router(VpcRouter),
    Nat(RouterNat),
    Domain(L2Domain),
    Port(HostPort),
    Group(crate::filter::GroupFilter),
}

impl Entry {
    /// The entry's key: what a later change of it replaces or removes.
    pub fn key(&self) -> String {
        match self {
            Entry::Gateway(_) => "gateway".into(),
            Entry::Router(r) => router_key(&r.vpc_id),
            Entry::Nat(n) => nat_key(&n.vpc_id, n.nat.eip),
            Entry::Domain(d) => format!("domain/{}", d.vni),
            Entry::Port(p) => format!("port/{}", p.nic_id),
            Entry::Group(g) => format!("group/{}", g.id),
        }
    }
}

/// The key of VPC `vpc_id`'s router entry.
pub fn router_key(vpc_id: &str) -> String {
    format!("router/{vpc_id}")
}

/// What the keys of VPC `vpc_id`'s NAT entries start with.
pub fn nat_prefix(vpc_id: &str) -> String {
    format!("nat/{vpc_id}/")
}

/// The key of the NAT entry of EIP `eip` on VPC `vpc_id`'s router.
pub fn nat_key(vpc_id: &str, eip: Ipv4Addr) -> String {
    format!("{}{eip}", nat_prefix(vpc_id))
}

/// One entry set (`entry`) or removed (`entry` absent) under `key`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<Entry>,
}

/// One answer of the watch: the changes up to `revision`. With `reset`
/// the agent drops what it had first (the answer is a whole snapshot: the
/// first one, or when the revision it asked from is too old to resume).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct WatchBatch {
    pub revision: i64,
    pub role: AgentRole,
    pub reset: bool,
    pub changes: Vec<Change>,
}

/// An agent's desired state as entries by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entries {
    pub map: BTreeMap<String, Entry>,
}

impl Entries {
    /// The entries of a whole desired state.
    pub fn of(desired: &Desired) -> Self {
        let mut map = BTreeMap::new();
        let mut put = |e: Entry| {
            map.insert(e.key(), e);
        };
        if let Some(g) = &desired.gateway {
            put(Entry::Gateway(GatewaySettings {
                eip_segments: g.eip_segments.clone(),
                infrastructure: g.infrastructure.clone(),
                infra_allow: g.infra_allow.clone(),
                snat_ip: g.snat_ip,
                cluster: g.cluster.clone(),
            }));
            for r in &g.routers {
                for n in &r.nat {
                    put(Entry::Nat(RouterNat {
                        vpc_id: r.vpc_id.clone(),
                        nat: n.clone(),
                    }));
                }
                put(Entry::Router(VpcRouter {
                    nat: Vec::new(),
                    ..r.clone()
                }));
            }
        }
        if let Some(h) = &desired.host {
            h.domains
                .iter()
                .cloned()
                .for_each(|d| put(Entry::Domain(d)));
            h.ports.iter().cloned().for_each(|p| put(Entry::Port(p)));
            h.groups.iter().cloned().for_each(|g| put(Entry::Group(g)));
        }
        Entries { map }
    }

    /// Applies one batch of the watch.
    pub fn apply(&mut self, batch: &WatchBatch) {
        if batch.reset {
            self.map.clear();
        }
        for c in &batch.changes {
            match &c.entry {
                Some(e) => self.map.insert(c.key.clone(), e.clone()),
                None => self.map.remove(&c.key),
            };
        }
    }

    /// The changes that make `self` into `new` over the keys that start
    /// with one of `prefixes` (an empty prefix: all of them); what is only
    /// in `self` there is removed.
    pub fn diff_under(&self, new: &Entries, prefixes: &[String]) -> Vec<Change> {
        fn under<'a>(
            m: &'a BTreeMap<String, Entry>,
            p: &'a str,
        ) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
            m.range::<str, _>((std::ops::Bound::Included(p), std::ops::Bound::Unbounded))
                .take_while(move |(k, _)| k.starts_with(p))
        }
        let mut out = Vec::new();
        for p in prefixes {
            for (k, old) in under(&self.map, p) {
                match new.map.get(k) {
                    Some(e) if e == old => {}
                    e => out.push(Change {
                        key: k.clone(),
                        entry: e.cloned(),
                    }),
                }
            }
            for (k, e) in under(&new.map, p) {
                if !self.map.contains_key(k) {
                    out.push(Change {
                        key: k.clone(),
                        entry: Some(e.clone()),
                    });
                }
            }
        }
        out
    }

    /// The whole desired state of an agent of `role` at `revision`.
    pub fn desired(&self, revision: i64, role: AgentRole) -> Desired {
        match role {
            AgentRole::Gateway => {
                let mut settings = GatewaySettings::default();
                let mut routers: BTreeMap<&str, VpcRouter> = BTreeMap::new();
                let mut nats: Vec<&RouterNat> = Vec::new();
                for e in self.map.values() {
                    match e {
                        Entry::Gateway(g) => settings = g.clone(),
                        Entry::Router(r) => {
                            routers.insert(r.vpc_id.as_str(), r.clone());
                        }
                        Entry::Nat(n) => nats.push(n),
                        _ => {}
                    }
                }
                for n in nats {
                    if let Some(r) = routers.get_mut(n.vpc_id.as_str()) {
                        r.nat.push(n.nat.clone());
                    }
                }
                let mut routers: Vec<VpcRouter> = routers.into_values().collect();
                for r in &mut routers {
                    r.nat.sort_by_key(|n| n.eip);
                }
                Desired {
                    revision,
                    gateway: Some(GatewayState {
                        routers,
                        eip_segments: settings.eip_segments,
                        infrastructure: settings.infrastructure,
                        infra_allow: settings.infra_allow,
                        snat_ip: settings.snat_ip,
                        cluster: settings.cluster,
                    }),
                    host: None,
                }
            }
            AgentRole::Host => {
                let mut h = HostState::default();
                for e in self.map.values() {
                    match e {
                        Entry::Domain(d) => h.domains.push(d.clone()),
                        Entry::Port(p) => h.ports.push(p.clone()),
                        Entry::Group(g) => h.groups.push(g.clone()),
                        _ => {}
                    }
                }
                h.domains.sort_by_key(|d| d.vni);
                // Keys sort ports by NIC ID and groups by ID already.
                Desired {
                    revision,
                    gateway: None,
                    host: Some(h),
                }
            }
        }
    }
}
