//! The slices of the world a part of the agents' states is computed
//! from: a gateway's routers of some VPCs, a host's whole state, or (for
//! the rare changes that concern everything) the whole world.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use vpcip_model::desired::{self, Agent, AgentRole, DhcpDefaults, HostState};
use vpcip_model::*;

use super::world::{Cache, members};

impl Cache {
    fn pick<R: Clone>(map: &BTreeMap<String, R>, ids: &BTreeSet<String>) -> Vec<R> {
        ids.iter().filter_map(|id| map.get(id)).cloned().collect()
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
    /// it is left out by the caller, it did not change), and their guest
    /// subnets' VTEPs, read from the indexes: no NIC or server is copied.
    pub fn routers(
        &self,
        vpcs: &BTreeSet<String>,
        memo: &mut HostMemo,
    ) -> (Slice, BTreeMap<String, BTreeSet<Ipv4Addr>>) {
        let subnet_ids: BTreeSet<String> = vpcs
            .iter()
            .flat_map(|v| members(&self.subnets_by_vpc, v).cloned())
            .collect();
        let eip_ids: BTreeSet<String> = vpcs
            .iter()
            .flat_map(|v| members(&self.eips_by_vpc, v).cloned())
            .collect();
        let vip_ids: BTreeSet<String> = vpcs
            .iter()
            .flat_map(|v| members(&self.vips_by_vpc, v).cloned())
            .collect();
        let vteps = subnet_ids
            .iter()
            .filter_map(|s| Some((s.clone(), self.vteps(s, memo)?)))
            .collect();
        let slice = Slice {
            vpcs: Self::pick(&self.vpcs, vpcs),
            subnets: Self::pick(&self.subnets, &subnet_ids),
            eips: Self::pick(&self.eips, &eip_ids),
            nics: Vec::new(),
            vips: Self::pick(&self.vips, &vip_ids),
            agents: Vec::new(),
            servers: Vec::new(),
            host_networks: Vec::new(),
            gateways: self.gateways.values().cloned().collect(),
            groups: Vec::new(),
        };
        (slice, vteps)
    }

    /// Host `agent`'s whole state: from its own NICs (and their VIPs'
    /// other NICs, its VRRP peers), with its subnets' VTEPs and its
    /// groups' member addresses read from the indexes (the thousands of
    /// other NICs in its subnets and groups are looked up, not copied).
    pub fn host(&self, agent: &Agent, dhcp: &DhcpDefaults, memo: &mut HostMemo) -> HostState {
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
        // The VIPs on its NICs, and their other NICs (VRRP peers).
        let vip_ids: BTreeSet<String> = mine
            .iter()
            .flat_map(|n| members(&self.vips_by_nic, n).cloned())
            .collect();
        let mut nic_ids = mine.clone();
        for v in vip_ids.iter().filter_map(|v| self.vips.get(v)) {
            nic_ids.extend(
                v.nic_ids
                    .iter()
                    .filter(|n| self.nics.contains_key(*n))
                    .cloned(),
            );
        }
        let servers = self.servers_of(&nic_ids);
        let slice = Slice {
            vpcs: Self::pick(&self.vpcs, &vpc_ids),
            subnets: Self::pick(&self.subnets, &subnet_ids),
            eips: Vec::new(),
            nics: Self::pick(&self.nics, &nic_ids),
            vips: Self::pick(&self.vips, &vip_ids),
            agents: Vec::new(),
            servers,
            host_networks: Vec::new(),
            gateways: Vec::new(),
            groups: Self::pick(&self.groups, &used),
        };
        let vteps = subnet_ids
            .iter()
            .filter_map(|s| Some((s.clone(), self.vteps(s, memo)?)))
            .collect();
        let members = used
            .iter()
            .filter_map(|g| Some((g.clone(), self.group_addresses(g, memo)?)))
            .collect();
        slice
            .world(dhcp)
            .host_with(agent, &vteps, &members, &mut memo.compiled)
    }

    /// A guest subnet's VTEPs (none for another kind): every gateway's
    /// underlay address and those of the hosts running a NIC of it.
    fn vteps(&self, id: &str, memo: &mut HostMemo) -> Option<BTreeSet<Ipv4Addr>> {
        if let Some(set) = memo.vteps.get(id) {
            return set.clone();
        }
        let set = self
            .subnets
            .get(id)
            .filter(|s| s.kind == SubnetKind::Guest)
            .map(|_| {
                if memo.underlays.is_empty() {
                    memo.underlays = self
                        .agents
                        .values()
                        .map(|a| {
                            (
                                (a.role == AgentRole::Gateway, a.name.clone()),
                                a.underlay_ip,
                            )
                        })
                        .collect();
                }
                let mut set: BTreeSet<Ipv4Addr> = memo
                    .underlays
                    .iter()
                    .filter(|((gateway, _), _)| *gateway)
                    .map(|(_, ip)| *ip)
                    .collect();
                let hosts = self.hosts_by_subnet.get(id).into_iter().flatten();
                for (host, _) in hosts {
                    if let Some(ip) = memo.underlays.get(&(false, host.clone())) {
                        set.insert(*ip);
                    }
                }
                set
            });
        memo.vteps.insert(id.to_string(), set.clone());
        set
    }

    /// A group's member addresses (none without members): its NICs'
    /// addresses and the VIPs bound to them.
    fn group_addresses(&self, g: &str, memo: &mut HostMemo) -> Option<BTreeSet<Ipv4Addr>> {
        if let Some(set) = memo.members.get(g) {
            return set.clone();
        }
        let mut set = BTreeSet::new();
        for n in members(&self.nics_by_group, g) {
            let Some(nic) = self.nics.get(n) else {
                continue;
            };
            set.insert(nic.ip);
            set.extend(
                members(&self.vips_by_nic, n)
                    .filter_map(|v| self.vips.get(v))
                    .map(|v| v.ip),
            );
        }
        let set = (!set.is_empty()).then_some(set);
        memo.members.insert(g.to_string(), set.clone());
        set
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

/// What hosts' states share, computed once in a pass over them (the
/// cache does not change during one): each subnet's VTEPs, each group's
/// member addresses and compiled filter, the agents' underlay addresses.
#[derive(Default)]
pub(crate) struct HostMemo {
    vteps: std::collections::HashMap<String, Option<BTreeSet<Ipv4Addr>>>,
    members: std::collections::HashMap<String, Option<BTreeSet<Ipv4Addr>>>,
    compiled: BTreeMap<String, vpcip_model::filter::GroupFilter>,
    /// By (is a gateway, name).
    underlays: BTreeMap<(bool, String), Ipv4Addr>,
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
