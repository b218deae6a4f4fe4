//! The controller's copy of the resources desired states are computed
//! from, with the indexes that find, for one changed resource, the agents
//! and the parts of their state it concerns, and the slice of the world
//! those parts are computed from.
//!
//! The computing itself stays the pure functions of
//! `vpcip_model::desired::World`, run on a slice: a gateway's routers from
//! their VPCs' subnets, EIPs, VIPs and ports; a host's ports from its
//! servers, the subnets they are in and the members of the groups they
//! use (`slice.rs`). A change costs the size of what it concerns, not of
//! the world.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::de::DeserializeOwned;
use vpcip_model::desired::{self, Agent};
use vpcip_model::*;

use crate::StoreError;

/// The kinds of resources agents' states are computed from.
pub(crate) const WATCHED: [Kind; 10] = [
    Kind::Vpc,
    Kind::Subnet,
    Kind::Eip,
    Kind::Server,
    Kind::Nic,
    Kind::Vip,
    Kind::Agent,
    Kind::HostNetwork,
    Kind::Gateway,
    Kind::SecurityGroup,
];

/// The parts of agents' states one batch of changes touched.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    /// Everything, for every agent (agents, gateways, host networks or
    /// EIP segments changed: rare, and they concern every agent).
    pub all: bool,
    /// VPC routers, on every gateway.
    pub routers: BTreeSet<String>,
    /// Hosts (by name) whose whole state is computed again.
    pub hosts: BTreeSet<String>,
    /// Single NAT entries of routers otherwise unchanged, on every
    /// gateway: by VPC, each entry's key with the EIPs that may now hold
    /// it (none: it is removed).
    pub nats: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        !self.all && self.routers.is_empty() && self.hosts.is_empty() && self.nats.is_empty()
    }
}

type Index = HashMap<String, BTreeSet<String>>;

fn link(index: &mut Index, key: &str, id: &str) {
    index
        .entry(key.to_string())
        .or_default()
        .insert(id.to_string());
}

fn unlink(index: &mut Index, key: &str, id: &str) {
    if let Some(set) = index.get_mut(key) {
        set.remove(id);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

/// Moves `id` in `index` from the keys `old` to the keys `new`.
fn reindex<'a>(
    index: &mut Index,
    old: impl IntoIterator<Item = &'a str>,
    new: impl IntoIterator<Item = &'a str>,
    id: &str,
) {
    for k in old {
        unlink(index, k, id);
    }
    for k in new {
        link(index, k, id);
    }
}

pub(super) fn members<'a>(index: &'a Index, key: &str) -> impl Iterator<Item = &'a String> + 'a {
    index.get(key).into_iter().flatten()
}

/// Every resource desired states are made of, by ID, and the indexes.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    pub(super) vpcs: BTreeMap<String, Vpc>,
    pub(super) subnets: BTreeMap<String, Subnet>,
    pub(super) eips: BTreeMap<String, Eip>,
    pub(super) servers: BTreeMap<String, Server>,
    pub(super) nics: BTreeMap<String, Nic>,
    pub(super) vips: BTreeMap<String, Vip>,
    pub agents: BTreeMap<String, Agent>,
    pub(super) host_networks: BTreeMap<String, HostNetwork>,
    pub(super) gateways: BTreeMap<String, Gateway>,
    pub(super) groups: BTreeMap<String, SecurityGroup>,
    /// Bound EIPs by VPC.
    pub(super) eips_by_vpc: Index,
    pub(super) subnets_by_vpc: Index,
    pub(super) nics_by_subnet: Index,
    pub(super) nics_by_group: Index,
    /// Groups whose rules name a group as their remote, by that group.
    pub(super) referrers: Index,
    pub(super) vips_by_vpc: Index,
    pub(super) vips_by_nic: Index,
    /// The server each NIC is attached to (as the server lists it).
    pub(super) server_of_nic: HashMap<String, String>,
    pub(super) servers_by_host: Index,
    /// Where each NIC on a host counts in the two indexes below.
    placed: HashMap<String, Placed>,
    /// The hosts with a port in a subnet (with how many), by subnet: a
    /// subnet's VTEPs and the hosts one of its changes concerns, read
    /// without going through its NICs.
    pub(super) hosts_by_subnet: HashMap<String, BTreeMap<String, u32>>,
    /// The hosts with a port in a group (with how many), by group.
    hosts_by_group: HashMap<String, BTreeMap<String, u32>>,
    /// The bound, limited EIPs of each VPC by their own HTB class
    /// ([`desired::natural_class`]), with how many share it; and the VPCs
    /// where two or more do. Where none do, each has its own class, and a
    /// bind, unbind or change of one is its NAT entry alone.
    limited_classes: HashMap<String, HashMap<u16, u32>>,
    shared_classes: HashMap<String, u32>,
}

/// A NIC on a host: the host, its subnet and groups.
#[derive(Debug, Clone, PartialEq)]
struct Placed {
    host: String,
    subnet: String,
    groups: Vec<String>,
}

/// Adds `by` to `host`'s count under `key` (gone at zero).
fn count(index: &mut HashMap<String, BTreeMap<String, u32>>, key: &str, host: &str, by: i32) {
    let hosts = index.entry(key.to_string()).or_default();
    let n = hosts.entry(host.to_string()).or_default();
    *n = n.saturating_add_signed(by);
    if *n == 0 {
        hosts.remove(host);
    }
    if hosts.is_empty() {
        index.remove(key);
    }
}

fn parse<R: DeserializeOwned>(doc: Option<&str>) -> Result<Option<R>, StoreError> {
    doc.map(crate::db::from_doc).transpose()
}

fn swap<R>(map: &mut BTreeMap<String, R>, id: &str, new: Option<R>) -> Option<R>
where
    R: Clone,
{
    match new {
        Some(r) => map.insert(id.to_string(), r),
        None => map.remove(id),
    }
}

impl Cache {
    /// Applies one resource's new document (None: deleted) and notes what
    /// it concerns in `dirty`. Kinds no agent's state depends on are
    /// ignored.
    pub fn apply(
        &mut self,
        kind: &str,
        id: &str,
        doc: Option<&str>,
        dirty: &mut Dirty,
    ) -> Result<(), StoreError> {
        match WATCHED.iter().find(|k| k.key() == kind).copied() {
            Some(Kind::Vpc) => {
                let new: Option<Vpc> = parse(doc)?;
                let old = swap(&mut self.vpcs, id, new.clone());
                if old != new {
                    dirty.routers.insert(id.to_string());
                    for s in members(&self.subnets_by_vpc, id) {
                        self.hosts_in_subnet(s, dirty);
                    }
                }
            }
            Some(Kind::Subnet) => {
                let new: Option<Subnet> = parse(doc)?;
                let old = swap(&mut self.subnets, id, new.clone());
                reindex(
                    &mut self.subnets_by_vpc,
                    old.as_ref().map(|s| s.vpc_id.as_str()),
                    new.as_ref().map(|s| s.vpc_id.as_str()),
                    id,
                );
                // What the addresses in use count changes no agent's state.
                let shape = |s: &Option<Subnet>| {
                    s.clone().map(|mut s| {
                        s.used = 0;
                        s
                    })
                };
                if shape(&old) != shape(&new) {
                    let eip_segment = [&old, &new]
                        .into_iter()
                        .flatten()
                        .any(|s| s.kind == SubnetKind::Eip);
                    dirty.all |= eip_segment;
                    for s in [&old, &new].into_iter().flatten() {
                        dirty.routers.insert(s.vpc_id.clone());
                    }
                    self.hosts_in_subnet(id, dirty);
                }
            }
            Some(Kind::Eip) => {
                let new: Option<Eip> = parse(doc)?;
                let old = swap(&mut self.eips, id, new.clone());
                reindex(
                    &mut self.eips_by_vpc,
                    old.as_ref().and_then(Eip::vpc_id),
                    new.as_ref().and_then(Eip::vpc_id),
                    id,
                );
                if old != new {
                    let bound = || {
                        [&old, &new]
                            .into_iter()
                            .flatten()
                            .filter(|e| e.vpc_id().is_some())
                    };
                    let shared_before: BTreeSet<String> = bound()
                        .filter_map(Eip::vpc_id)
                        .filter(|v| self.shared_classes.contains_key(*v))
                        .map(str::to_string)
                        .collect();
                    for (e, by) in [(&old, -1), (&new, 1)] {
                        if let Some(e) = e
                            && let Some(vpc) = e.vpc_id()
                            && desired::is_limited(e)
                        {
                            self.count_class(vpc, e.ip, by);
                        }
                    }
                    for e in bound() {
                        let vpc = e.vpc_id().unwrap_or_default();
                        // A visible EIP is in its router's own entry; where
                        // classes are shared, one EIP's can move others'.
                        if e.mode() == EipMode::Visible
                            || shared_before.contains(vpc)
                            || self.shared_classes.contains_key(vpc)
                        {
                            dirty.routers.insert(vpc.to_string());
                        } else {
                            dirty
                                .nats
                                .entry(vpc.to_string())
                                .or_default()
                                .entry(desired::nat_key(vpc, e.ip))
                                .or_default()
                                .insert(id.to_string());
                        }
                    }
                }
            }
            Some(Kind::Server) => {
                let new: Option<Server> = parse(doc)?;
                let old = swap(&mut self.servers, id, new.clone());
                for (s, add) in [(&old, false), (&new, true)] {
                    let Some(s) = s else { continue };
                    for n in &s.nic_ids {
                        if add {
                            self.server_of_nic.insert(n.clone(), id.to_string());
                        } else if self.server_of_nic.get(n).map(String::as_str) == Some(id) {
                            self.server_of_nic.remove(n);
                        }
                    }
                }
                reindex(
                    &mut self.servers_by_host,
                    old.as_ref().and_then(|s| s.host.as_deref()),
                    new.as_ref().and_then(|s| s.host.as_deref()),
                    id,
                );
                for s in [&old, &new].into_iter().flatten() {
                    for n in &s.nic_ids {
                        self.place(n);
                    }
                }
                let shape = |s: &Option<Server>| {
                    s.as_ref()
                        .map(|s| (s.host.clone(), s.nic_ids.clone(), s.name.clone()))
                };
                if shape(&old) != shape(&new) {
                    for s in [&old, &new].into_iter().flatten() {
                        dirty.hosts.extend(s.host.clone());
                        for n in &s.nic_ids {
                            self.nic_placed(n, dirty);
                        }
                    }
                }
            }
            Some(Kind::Nic) => {
                let new: Option<Nic> = parse(doc)?;
                let old = swap(&mut self.nics, id, new.clone());
                fn subnet(n: &Option<Nic>) -> Option<&str> {
                    n.as_ref().map(|n| n.subnet_id.as_str())
                }
                fn groups(n: &Option<Nic>) -> impl Iterator<Item = &str> {
                    n.iter()
                        .flat_map(|n| n.security_group_ids.iter().map(String::as_str))
                }
                reindex(&mut self.nics_by_subnet, subnet(&old), subnet(&new), id);
                reindex(&mut self.nics_by_group, groups(&old), groups(&new), id);
                self.place(id);
                if old != new {
                    dirty.hosts.extend(self.host_of_nic(id));
                    if subnet(&old) != subnet(&new) {
                        for n in [&old, &new].into_iter().flatten() {
                            dirty.routers.insert(n.vpc_id.clone());
                            self.hosts_in_subnet(&n.subnet_id, dirty);
                        }
                    }
                    let membership =
                        |n: &Option<Nic>| n.as_ref().map(|n| (n.ip, n.security_group_ids.clone()));
                    if membership(&old) != membership(&new) {
                        for n in [&old, &new].into_iter().flatten() {
                            for g in &n.security_group_ids {
                                self.group_members_changed(g, dirty);
                            }
                        }
                        // Its VIPs' other holders send VRRP to its address.
                        for v in members(&self.vips_by_nic, id) {
                            self.vip_holders(v, dirty);
                        }
                    }
                }
            }
            Some(Kind::Vip) => {
                let new: Option<Vip> = parse(doc)?;
                let old = swap(&mut self.vips, id, new.clone());
                fn vpc(v: &Option<Vip>) -> Option<&str> {
                    v.as_ref().map(|v| v.vpc_id.as_str())
                }
                fn nics(v: &Option<Vip>) -> impl Iterator<Item = &str> {
                    v.iter().flat_map(|v| v.nic_ids.iter().map(String::as_str))
                }
                reindex(&mut self.vips_by_vpc, vpc(&old), vpc(&new), id);
                reindex(&mut self.vips_by_nic, nics(&old), nics(&new), id);
                if old != new {
                    for v in [&old, &new].into_iter().flatten() {
                        dirty.routers.insert(v.vpc_id.clone());
                        for n in &v.nic_ids {
                            dirty.hosts.extend(self.host_of_nic(n));
                            if let Some(nic) = self.nics.get(n) {
                                for g in &nic.security_group_ids {
                                    self.group_members_changed(g, dirty);
                                }
                            }
                        }
                    }
                }
            }
            Some(Kind::SecurityGroup) => {
                let new: Option<SecurityGroup> = parse(doc)?;
                let old = swap(&mut self.groups, id, new.clone());
                fn remotes(g: &Option<SecurityGroup>) -> impl Iterator<Item = &str> {
                    g.iter()
                        .flat_map(|g| g.rules.iter().filter_map(|r| r.remote_group.as_deref()))
                }
                reindex(&mut self.referrers, remotes(&old), remotes(&new), id);
                if old != new {
                    self.hosts_using(id, dirty);
                }
            }
            Some(Kind::Agent) => {
                let new: Option<Agent> = parse(doc)?;
                dirty.all |= swap(&mut self.agents, id, new.clone()) != new;
            }
            Some(Kind::Gateway) => {
                let new: Option<Gateway> = parse(doc)?;
                dirty.all |= swap(&mut self.gateways, id, new.clone()) != new;
            }
            Some(Kind::HostNetwork) => {
                let new: Option<HostNetwork> = parse(doc)?;
                dirty.all |= swap(&mut self.host_networks, id, new.clone()) != new;
            }
            _ => {}
        }
        Ok(())
    }

    /// The host a NIC's server is placed on.
    /// Adds `by` to the count of VPC `vpc`'s bound, limited EIPs with
    /// the class of `ip`.
    fn count_class(&mut self, vpc: &str, ip: std::net::Ipv4Addr, by: i32) {
        let class = desired::natural_class(ip);
        let classes = self.limited_classes.entry(vpc.to_string()).or_default();
        let n = classes.entry(class).or_default();
        let before = *n;
        *n = n.saturating_add_signed(by);
        let after = *n;
        if after == 0 {
            classes.remove(&class);
        }
        if classes.is_empty() {
            self.limited_classes.remove(vpc);
        }
        let shared = self.shared_classes.entry(vpc.to_string()).or_default();
        match (before > 1, after > 1) {
            (false, true) => *shared += 1,
            (true, false) => *shared = shared.saturating_sub(1),
            _ => {}
        }
        if *shared == 0 {
            self.shared_classes.remove(vpc);
        }
    }

    /// The NAT entries `dirty.nats` names (routers computed whole left
    /// out), the same on every gateway: each key set from the EIP that
    /// now holds it, or removed.
    pub fn nat_changes(&self, dirty: &Dirty) -> Vec<desired::Change> {
        let mut out = Vec::new();
        for (vpc, keys) in &dirty.nats {
            if dirty.all
                || dirty.routers.contains(vpc)
                || self.vpcs.get(vpc).is_none_or(|v| v.is_default)
            {
                continue;
            }
            for (key, ids) in keys {
                let entry = ids
                    .iter()
                    .filter_map(|id| self.eips.get(id))
                    .filter(|e| e.vpc_id() == Some(vpc) && desired::nat_key(vpc, e.ip) == *key)
                    .find_map(|e| {
                        let class = desired::is_limited(e).then(|| desired::natural_class(e.ip));
                        desired::nat_entry(e, class)
                    })
                    .map(|nat| {
                        desired::Entry::Nat(desired::RouterNat {
                            vpc_id: vpc.clone(),
                            nat,
                        })
                    });
                out.push(desired::Change {
                    key: key.clone(),
                    entry,
                });
            }
        }
        out
    }

    fn host_of_nic(&self, nic: &str) -> Option<String> {
        let server = self.servers.get(self.server_of_nic.get(nic)?)?;
        server.host.clone()
    }

    /// Counts NIC `nic` in the host indexes where it is now (its
    /// server's host, its subnet and groups), and no longer where it was.
    fn place(&mut self, nic: &str) {
        let now = self.nics.get(nic).and_then(|n| {
            Some(Placed {
                host: self.host_of_nic(nic)?,
                subnet: n.subnet_id.clone(),
                groups: n.security_group_ids.clone(),
            })
        });
        if self.placed.get(nic) == now.as_ref() {
            return;
        }
        if let Some(b) = self.placed.remove(nic) {
            count(&mut self.hosts_by_subnet, &b.subnet, &b.host, -1);
            for g in &b.groups {
                count(&mut self.hosts_by_group, g, &b.host, -1);
            }
        }
        if let Some(p) = now {
            count(&mut self.hosts_by_subnet, &p.subnet, &p.host, 1);
            for g in &p.groups {
                count(&mut self.hosts_by_group, g, &p.host, 1);
            }
            self.placed.insert(nic.to_string(), p);
        }
    }

    /// A NIC came to or left a host: the VTEPs of its subnet change, on
    /// the gateways and on the hosts with a port in it.
    fn nic_placed(&self, nic: &str, dirty: &mut Dirty) {
        if dirty.all {
            // Everything is computed anyway (a load): no fan-out.
            return;
        }
        if let Some(n) = self.nics.get(nic) {
            dirty.routers.insert(n.vpc_id.clone());
            self.hosts_in_subnet(&n.subnet_id, dirty);
        }
    }

    /// The hosts with a port in `subnet`.
    fn hosts_in_subnet(&self, subnet: &str, dirty: &mut Dirty) {
        if dirty.all {
            // Everything is computed anyway (a load): no fan-out.
            return;
        }
        if let Some(hosts) = self.hosts_by_subnet.get(subnet) {
            dirty.hosts.extend(hosts.keys().cloned());
        }
    }

    /// The hosts with a port in group `group`.
    fn hosts_using(&self, group: &str, dirty: &mut Dirty) {
        if dirty.all {
            // Everything is computed anyway (a load): no fan-out.
            return;
        }
        if let Some(hosts) = self.hosts_by_group.get(group) {
            dirty.hosts.extend(hosts.keys().cloned());
        }
    }

    /// Group `group`'s members changed: the hosts filtering with it
    /// (basic groups let members in) or with a group naming it as remote.
    fn group_members_changed(&self, group: &str, dirty: &mut Dirty) {
        if dirty.all {
            // Everything is computed anyway (a load): no fan-out.
            return;
        }
        self.hosts_using(group, dirty);
        for g in members(&self.referrers, group) {
            self.hosts_using(g, dirty);
        }
    }

    /// The hosts of VIP `vip`'s NICs.
    fn vip_holders(&self, vip: &str, dirty: &mut Dirty) {
        if dirty.all {
            // Everything is computed anyway (a load): no fan-out.
            return;
        }
        if let Some(v) = self.vips.get(vip) {
            for n in &v.nic_ids {
                dirty.hosts.extend(self.host_of_nic(n));
            }
        }
    }
}
