//! The controller's copy of the resources desired states are computed
//! from, with the indexes that find, for one changed resource, the agents
//! and the parts of their state it concerns, and the slice of the world
//! those parts are computed from.
//!
//! The computing itself stays the pure functions of
//! `vpcip_model::desired::World`, run on a slice: a gateway's routers from
//! their VPCs' subnets, EIPs, VIPs and ports; a host's ports from its
//! servers, the subnets they are in and the members of the groups they
//! use. A change costs the size of what it concerns, not of the world.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::de::DeserializeOwned;
use vpcip_model::desired::{self, Agent, AgentRole, DhcpDefaults, HostState};
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
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        !self.all && self.routers.is_empty() && self.hosts.is_empty()
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

fn members<'a>(index: &'a Index, key: &str) -> impl Iterator<Item = &'a String> + 'a {
    index.get(key).into_iter().flatten()
}

/// Every resource desired states are made of, by ID, and the indexes.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    vpcs: BTreeMap<String, Vpc>,
    subnets: BTreeMap<String, Subnet>,
    eips: BTreeMap<String, Eip>,
    servers: BTreeMap<String, Server>,
    nics: BTreeMap<String, Nic>,
    vips: BTreeMap<String, Vip>,
    pub agents: BTreeMap<String, Agent>,
    host_networks: BTreeMap<String, HostNetwork>,
    gateways: BTreeMap<String, Gateway>,
    groups: BTreeMap<String, SecurityGroup>,
    /// Bound EIPs by VPC.
    eips_by_vpc: Index,
    subnets_by_vpc: Index,
    nics_by_subnet: Index,
    nics_by_group: Index,
    /// Groups whose rules name a group as their remote, by that group.
    referrers: Index,
    vips_by_vpc: Index,
    vips_by_nic: Index,
    /// The server each NIC is attached to (as the server lists it).
    server_of_nic: HashMap<String, String>,
    servers_by_host: Index,
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
                    let subnets: Vec<String> = members(&self.subnets_by_vpc, id).cloned().collect();
                    for s in subnets {
                        self.hosts_in_subnet(&s, dirty);
                    }
                }
            }
            Some(Kind::Subnet) => {
                let new: Option<Subnet> = parse(doc)?;
                let old = swap(&mut self.subnets, id, new.clone());
                if let Some(o) = &old {
                    unlink(&mut self.subnets_by_vpc, &o.vpc_id, id);
                }
                if let Some(n) = &new {
                    link(&mut self.subnets_by_vpc, &n.vpc_id, id);
                }
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
                for (e, add) in [(&old, false), (&new, true)] {
                    if let Some(vpc) = e.as_ref().and_then(|e| e.vpc_id()) {
                        if add {
                            link(&mut self.eips_by_vpc, vpc, id);
                        } else {
                            unlink(&mut self.eips_by_vpc, vpc, id);
                        }
                    }
                }
                if old != new {
                    for e in [&old, &new].into_iter().flatten() {
                        if let Some(vpc) = e.vpc_id() {
                            dirty.routers.insert(vpc.to_string());
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
                    if let Some(h) = &s.host {
                        if add {
                            link(&mut self.servers_by_host, h, id);
                        } else {
                            unlink(&mut self.servers_by_host, h, id);
                        }
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
                for (n, add) in [(&old, false), (&new, true)] {
                    let Some(n) = n else { continue };
                    let f = if add { link } else { unlink };
                    f(&mut self.nics_by_subnet, &n.subnet_id, id);
                    for g in &n.security_group_ids {
                        f(&mut self.nics_by_group, g, id);
                    }
                }
                if old != new {
                    dirty.hosts.extend(self.host_of_nic(id));
                    let placement = |n: &Option<Nic>| n.as_ref().map(|n| n.subnet_id.clone());
                    if placement(&old) != placement(&new) {
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
                        let vips: Vec<String> = members(&self.vips_by_nic, id).cloned().collect();
                        for v in vips {
                            self.vip_holders(&v, dirty);
                        }
                    }
                }
            }
            Some(Kind::Vip) => {
                let new: Option<Vip> = parse(doc)?;
                let old = swap(&mut self.vips, id, new.clone());
                for (v, add) in [(&old, false), (&new, true)] {
                    let Some(v) = v else { continue };
                    let f = if add { link } else { unlink };
                    f(&mut self.vips_by_vpc, &v.vpc_id, id);
                    for n in &v.nic_ids {
                        f(&mut self.vips_by_nic, n, id);
                    }
                }
                if old != new {
                    for v in [&old, &new].into_iter().flatten() {
                        dirty.routers.insert(v.vpc_id.clone());
                        for n in &v.nic_ids {
                            dirty.hosts.extend(self.host_of_nic(n));
                            if let Some(nic) = self.nics.get(n) {
                                for g in nic.security_group_ids.clone() {
                                    self.group_members_changed(&g, dirty);
                                }
                            }
                        }
                    }
                }
            }
            Some(Kind::SecurityGroup) => {
                let new: Option<SecurityGroup> = parse(doc)?;
                let old = swap(&mut self.groups, id, new.clone());
                for (g, add) in [(&old, false), (&new, true)] {
                    let Some(g) = g else { continue };
                    let f = if add { link } else { unlink };
                    for r in &g.rules {
                        if let Some(remote) = &r.remote_group {
                            f(&mut self.referrers, remote, id);
                        }
                    }
                }
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
    fn host_of_nic(&self, nic: &str) -> Option<String> {
        let server = self.servers.get(self.server_of_nic.get(nic)?)?;
        server.host.clone()
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
        for n in members(&self.nics_by_subnet, subnet) {
            dirty.hosts.extend(self.host_of_nic(n));
        }
    }

    /// The hosts with a port in group `group`.
    fn hosts_using(&self, group: &str, dirty: &mut Dirty) {
        if dirty.all {
            // Everything is computed anyway (a load): no fan-out.
            return;
        }
        for n in members(&self.nics_by_group, group) {
            dirty.hosts.extend(self.host_of_nic(n));
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

    fn pick<R: Clone>(map: &BTreeMap<String, R>, ids: &BTreeSet<String>) -> Vec<R> {
        ids.iter().filter_map(|id| map.get(id)).cloned().collect()
    }

    /// The agents a slice needs: every gateway's, and the host agents of
    /// `servers`.
    fn agents_for(&self, servers: &[Server]) -> Vec<Agent> {
        let hosts: BTreeSet<&str> = servers.iter().filter_map(|s| s.host.as_deref()).collect();
        self.agents
            .values()
            .filter(|a| a.role == AgentRole::Gateway || hosts.contains(a.name.as_str()))
            .cloned()
            .collect()
    }

    fn servers_of(&self, nics: &BTreeSet<String>) -> Vec<Server> {
        let ids: BTreeSet<String> = nics
            .iter()
            .filter_map(|n| self.server_of_nic.get(n).cloned())
            .collect();
        Self::pick(&self.servers, &ids)
    }

    /// The slice of the world the routers of the VPCs `vpcs` are computed
    /// from (on every gateway: the rest of a gateway's state computed from
    /// it is left out by the caller, it did not change).
    pub fn routers(&self, vpcs: &BTreeSet<String>) -> Slice {
        let subnet_ids: BTreeSet<String> = vpcs
            .iter()
            .flat_map(|v| members(&self.subnets_by_vpc, v).cloned())
            .collect();
        let nic_ids: BTreeSet<String> = subnet_ids
            .iter()
            .flat_map(|s| members(&self.nics_by_subnet, s).cloned())
            .collect();
        let eip_ids: BTreeSet<String> = vpcs
            .iter()
            .flat_map(|v| members(&self.eips_by_vpc, v).cloned())
            .collect();
        let vip_ids: BTreeSet<String> = vpcs
            .iter()
            .flat_map(|v| members(&self.vips_by_vpc, v).cloned())
            .collect();
        let servers = self.servers_of(&nic_ids);
        Slice {
            vpcs: Self::pick(&self.vpcs, vpcs),
            subnets: Self::pick(&self.subnets, &subnet_ids),
            eips: Self::pick(&self.eips, &eip_ids),
            nics: Self::pick(&self.nics, &nic_ids),
            vips: Self::pick(&self.vips, &vip_ids),
            agents: self.agents_for(&servers),
            servers,
            host_networks: Vec::new(),
            gateways: self.gateways.values().cloned().collect(),
            groups: Vec::new(),
        }
    }

    /// Host `agent`'s whole state, from the slice of the world it depends
    /// on.
    pub fn host(&self, agent: &Agent, dhcp: &DhcpDefaults) -> HostState {
        let server_ids: BTreeSet<String> = members(&self.servers_by_host, &agent.name)
            .cloned()
            .collect();
        let mine: BTreeSet<String> = server_ids
            .iter()
            .filter_map(|s| self.servers.get(s))
            .flat_map(|s| s.nic_ids.iter().cloned())
            .filter(|n| self.nics.contains_key(n))
            .collect();
        let subnet_ids: BTreeSet<String> = mine
            .iter()
            .filter_map(|n| self.nics.get(n))
            .map(|n| n.subnet_id.clone())
            .collect();
        let vpc_ids: BTreeSet<String> = mine
            .iter()
            .filter_map(|n| self.nics.get(n))
            .map(|n| n.vpc_id.clone())
            .collect();
        let mut used: BTreeSet<String> = mine
            .iter()
            .filter_map(|n| self.nics.get(n))
            .flat_map(|n| n.security_group_ids.iter().cloned())
            .collect();
        // The groups the used ones name as remotes: their members' addresses.
        let remotes: BTreeSet<String> = used
            .iter()
            .filter_map(|g| self.groups.get(g))
            .flat_map(|g| g.rules.iter().filter_map(|r| r.remote_group.clone()))
            .collect();
        used.extend(remotes);
        let mut nic_ids = mine.clone();
        for s in &subnet_ids {
            nic_ids.extend(members(&self.nics_by_subnet, s).cloned());
        }
        for g in &used {
            nic_ids.extend(members(&self.nics_by_group, g).cloned());
        }
        let vip_ids: BTreeSet<String> = nic_ids
            .iter()
            .flat_map(|n| members(&self.vips_by_nic, n).cloned())
            .collect();
        // The other holders of the VIPs (VRRP peers).
        for v in vip_ids.iter().filter_map(|v| self.vips.get(v)) {
            nic_ids.extend(v.nic_ids.iter().cloned());
        }
        let vip_ids: BTreeSet<String> = nic_ids
            .iter()
            .flat_map(|n| members(&self.vips_by_nic, n).cloned())
            .collect();
        let servers = self.servers_of(&nic_ids);
        let slice = Slice {
            vpcs: Self::pick(&self.vpcs, &vpc_ids),
            subnets: Self::pick(&self.subnets, &subnet_ids),
            eips: Vec::new(),
            nics: Self::pick(&self.nics, &nic_ids),
            vips: Self::pick(&self.vips, &vip_ids),
            agents: self.agents_for(&servers),
            servers,
            host_networks: Vec::new(),
            gateways: Vec::new(),
            groups: Self::pick(&self.groups, &used),
        };
        slice.world(dhcp).host(agent)
    }

    /// The whole world (for the rare changes that concern everything).
    pub fn whole(&self) -> Slice {
        Slice {
            vpcs: self.vpcs.values().cloned().collect(),
            subnets: self.subnets.values().cloned().collect(),
            eips: self.eips.values().cloned().collect(),
            servers: self.servers.values().cloned().collect(),
            nics: self.nics.values().cloned().collect(),
            vips: self.vips.values().cloned().collect(),
            agents: self.agents.values().cloned().collect(),
            host_networks: self.host_networks.values().cloned().collect(),
            gateways: self.gateways.values().cloned().collect(),
            groups: self.groups.values().cloned().collect(),
        }
    }
}

/// Owned resources a `desired::World` borrows.
pub(crate) struct Slice {
    vpcs: Vec<Vpc>,
    subnets: Vec<Subnet>,
    eips: Vec<Eip>,
    servers: Vec<Server>,
    nics: Vec<Nic>,
    vips: Vec<Vip>,
    agents: Vec<Agent>,
    host_networks: Vec<HostNetwork>,
    gateways: Vec<Gateway>,
    groups: Vec<SecurityGroup>,
}

impl Slice {
    pub fn world<'a>(&'a self, dhcp: &'a DhcpDefaults) -> desired::World<'a> {
        desired::World {
            vpcs: &self.vpcs,
            subnets: &self.subnets,
            eips: &self.eips,
            servers: &self.servers,
            nics: &self.nics,
            vips: &self.vips,
            agents: &self.agents,
            host_networks: &self.host_networks,
            gateways: &self.gateways,
            security_groups: &self.groups,
            dhcp,
        }
    }
}
