//! What each agent gets, computed from the resources (`World`).

use super::*;

/// What an agent gets: the store's revision and its whole desired state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Desired {
    pub revision: i64,
    pub gateway: Option<GatewayState>,
    pub host: Option<HostState>,
}

/// What the gateway node's ends of the router links are named after.
pub const ROUTER_IFPREFIX: &str = "vr";

/// Router links are /31s in 169.254.0.0/16; number 0 is not used, and
/// 169.254.250.2 and above are left for node-local links (`vpcip
/// allinone`'s host namespace).
pub const MAX_ROUTERS: u32 = 32000;

/// The addresses of router `index`'s link: the gateway node's end and the
/// router's (`up0`) end of a /31.
pub fn router_link(index: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(169, 254, 0, 0)) + 2 * index.min(MAX_ROUTERS);
    (Ipv4Addr::from(base), Ipv4Addr::from(base + 1))
}

/// The link-local block the router links are numbered from: the gateway
/// node masquerades what leaves it from there (the VPCs' default SNAT).
pub fn router_links_block() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(169, 254, 0, 0), 16).unwrap_or_default()
}

/// The tail of a resource ID (after its kind's prefix), for link names.
fn id_tail(id: &str) -> &str {
    id.rsplit('-').next().unwrap_or(id)
}

/// The gateway node's end of a VPC router's link (`vr` + the VPC ID's tail).
pub fn router_ifname(vpc_id: &str) -> String {
    format!("{ROUTER_IFPREFIX}{}", id_tail(vpc_id))
}

/// The host's end of a NIC's port (`t` + the NIC ID's tail): the name the
/// hypervisor gives the VM's tap or veth.
pub fn port_ifname(nic_id: &str) -> String {
    format!("t{}", id_tail(nic_id))
}

/// Everything the desired states are computed from.
pub struct World<'a> {
    pub vpcs: &'a [Vpc],
    pub subnets: &'a [Subnet],
    pub eips: &'a [Eip],
    pub servers: &'a [Server],
    pub nics: &'a [Nic],
    pub vips: &'a [Vip],
    pub agents: &'a [Agent],
    pub host_networks: &'a [HostNetwork],
    pub gateways: &'a [Gateway],
    pub security_groups: &'a [SecurityGroup],
    pub dhcp: &'a DhcpDefaults,
}

impl World<'_> {
    /// The host each NIC's server runs on, by NIC ID.
    fn nic_hosts(&self) -> BTreeMap<&str, Ipv4Addr> {
        let hosts: BTreeMap<&str, Ipv4Addr> = self
            .agents
            .iter()
            .filter(|a| a.role == AgentRole::Host)
            .map(|a| (a.name.as_str(), a.underlay_ip))
            .collect();
        let mut out = BTreeMap::new();
        for s in self.servers {
            if let Some(ip) = s.host.as_deref().and_then(|h| hosts.get(h)) {
                for n in &s.nic_ids {
                    out.insert(n.as_str(), *ip);
                }
            }
        }
        out
    }

    /// Each guest subnet's VTEPs: the gateways and the hosts with a port in
    /// it, by subnet ID.
    fn vteps(&self) -> BTreeMap<&str, BTreeSet<Ipv4Addr>> {
        let nic_hosts = self.nic_hosts();
        let gateways: BTreeSet<Ipv4Addr> = self
            .agents
            .iter()
            .filter(|a| a.role == AgentRole::Gateway)
            .map(|a| a.underlay_ip)
            .collect();
        let mut out: BTreeMap<&str, BTreeSet<Ipv4Addr>> = self
            .subnets
            .iter()
            .filter(|s| s.kind == SubnetKind::Guest)
            .map(|s| (s.id.as_str(), gateways.clone()))
            .collect();
        for n in self.nics {
            if let (Some(ip), Some(set)) = (
                nic_hosts.get(n.id.as_str()),
                out.get_mut(n.subnet_id.as_str()),
            ) {
                set.insert(*ip);
            }
        }
        out
    }

    /// Desired state of the agent `agent`.
    pub fn desired(&self, revision: i64, agent: &Agent) -> Desired {
        match agent.role {
            AgentRole::Gateway => Desired {
                revision,
                gateway: Some(self.gateway(agent)),
                host: None,
            },
            AgentRole::Host => Desired {
                revision,
                gateway: None,
                host: Some(self.host(agent)),
            },
        }
    }

    /// The gateway's desired state: one router per tenant VPC, with its
    /// guest subnets and the EIPs bound in it.
    pub fn gateway(&self, agent: &Agent) -> GatewayState {
        let vteps = self
            .vteps()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        self.gateway_with(agent, &vteps)
    }

    /// [`World::gateway`] with each guest subnet's VTEPs given: the world
    /// need then hold no NIC or server (the watch reads the VTEPs from its
    /// indexes instead of copying every NIC and server of a VPC to
    /// compute its router again).
    pub fn gateway_with(
        &self,
        agent: &Agent,
        vteps: &BTreeMap<String, BTreeSet<Ipv4Addr>>,
    ) -> GatewayState {
        let me = agent.underlay_ip;
        let slots = gateway_slots(self.gateways);
        let cluster = self.cluster(agent, &slots);
        // Each VPC's EIPs, subnets and VIPs, grouped once (not searched for
        // every VPC).
        let mut eips_of: BTreeMap<&str, Vec<&Eip>> = BTreeMap::new();
        for e in self.eips {
            if let Some(v) = e.vpc_id() {
                eips_of.entry(v).or_default().push(e);
            }
        }
        let mut subnets_of: BTreeMap<&str, Vec<&Subnet>> = BTreeMap::new();
        for s in self.subnets {
            subnets_of.entry(s.vpc_id.as_str()).or_default().push(s);
        }
        let mut vips_of: BTreeMap<&str, Vec<Ipv4Addr>> = BTreeMap::new();
        for x in self.vips {
            vips_of.entry(x.vpc_id.as_str()).or_default().push(x.ip);
        }
        let none_eips = Vec::new();
        let none_subnets = Vec::new();
        let mut routers: Vec<VpcRouter> = self
            .vpcs
            .iter()
            .filter(|v| !v.is_default)
            .map(|v| {
                let in_vpc = eips_of.get(v.id.as_str()).unwrap_or(&none_eips);
                let mut bound_here: Vec<&Eip> = in_vpc
                    .iter()
                    .copied()
                    .filter(|e| e.private_ip().is_some())
                    .collect();
                bound_here.sort_by_key(|e| e.ip);
                let limited: Vec<Ipv4Addr> = bound_here
                    .iter()
                    .filter(|e| is_limited(e))
                    .map(|e| e.ip)
                    .collect();
                let classes: BTreeMap<Ipv4Addr, u16> = limited
                    .iter()
                    .zip(assign_classes(&limited))
                    .filter_map(|(ip, c)| Some((*ip, c?)))
                    .collect();
                let nat: Vec<NatEntry> = bound_here
                    .iter()
                    .filter_map(|e| nat_entry(e, classes.get(&e.ip).copied()))
                    .collect();
                let mut visible: Vec<Ipv4Addr> = in_vpc
                    .iter()
                    .filter(|e| e.mode() == EipMode::Visible && e.private_ip().is_some())
                    .map(|e| e.ip)
                    .collect();
                visible.sort();
                let mut vips: Vec<Ipv4Addr> =
                    vips_of.get(v.id.as_str()).cloned().unwrap_or_default();
                vips.sort();
                VpcRouter {
                    vpc_id: v.id.clone(),
                    index: v.router_index,
                    slot: placement(&v.id, self.gateways, &slots).unwrap_or(0),
                    vips,
                    subnets: subnets_of
                        .get(v.id.as_str())
                        .unwrap_or(&none_subnets)
                        .iter()
                        .filter(|s| s.kind == SubnetKind::Guest)
                        .map(|s| RouterSubnet {
                            l2: L2Domain {
                                subnet_id: s.id.clone(),
                                vni: s.vni,
                                vteps: vteps
                                    .get(&s.id)
                                    .map(|set| set.iter().copied().filter(|ip| *ip != me).collect())
                                    .unwrap_or_default(),
                            },
                            cidr: s.cidr,
                            gateway: s.gateway,
                        })
                        .collect(),
                    nat,
                    visible,
                }
            })
            .collect();
        routers.sort_by(|a, b| a.vpc_id.cmp(&b.vpc_id));
        for r in &mut routers {
            r.subnets
                .sort_by(|a, b| a.l2.subnet_id.cmp(&b.l2.subnet_id));
        }
        let mut eip_segments: Vec<Ipv4Net> = self
            .subnets
            .iter()
            .filter(|s| s.kind == SubnetKind::Eip)
            .map(|s| s.cidr)
            .collect();
        eip_segments.sort();
        // The host networks, and every agent's address (also one outside
        // them, or before any host network is registered).
        let mut infrastructure: Vec<Ipv4Net> = self
            .host_networks
            .iter()
            .map(|h| h.cidr)
            .chain(self.agents.iter().map(|a| Ipv4Net::from(a.underlay_ip)))
            .collect();
        infrastructure.sort();
        infrastructure.dedup();
        GatewayState {
            routers,
            eip_segments,
            infrastructure,
            infra_allow: Vec::new(),
            snat_ip: self
                .gateways
                .iter()
                .find(|g| g.name == agent.name)
                .and_then(|g| g.snat_ip),
            cluster,
        }
    }

    /// The cluster as gateway agent `agent` must know it.
    fn cluster(&self, agent: &Agent, slots: &BTreeMap<&str, u8>) -> Cluster {
        let Some(me) = self.gateways.iter().find(|g| g.name == agent.name) else {
            return Cluster::default();
        };
        let mut peers: Vec<Ipv4Addr> = self
            .gateways
            .iter()
            .filter(|g| g.id != me.id)
            .map(|g| g.underlay_ip)
            .collect();
        peers.sort();
        let mut out: Vec<Slot> = self
            .gateways
            .iter()
            .filter_map(|owner| {
                let vrid = *slots.get(owner.id.as_str())?;
                Some(Slot {
                    vrid,
                    owner: owner.name.clone(),
                    priority: slot_priority(me, owner, vrid, self.gateways),
                    snat_ip: owner.snat_ip,
                })
            })
            .collect();
        out.sort_by_key(|s| s.vrid);
        Cluster {
            slot: slots.get(me.id.as_str()).copied().unwrap_or(0),
            drained: me.drained,
            advert_cs: GATEWAY_ADVERT_CS,
            peers,
            slots: out,
            bgp: me.bgp.clone(),
        }
    }

    /// A host's desired state: a port per NIC of the servers placed on it,
    /// and the L2 domains of their subnets.
    pub fn host(&self, agent: &Agent) -> HostState {
        let vteps = self
            .vteps()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let members = filter::group_members(self.nics, self.vips);
        self.host_with(agent, &vteps, &members, &mut BTreeMap::new())
    }

    /// [`World::host`] with each subnet's VTEPs and each group's member
    /// addresses given: the world need then hold only the host's own NICs
    /// and their VIPs' other NICs (the watch computes the two from its
    /// indexes instead of copying every NIC of the host's subnets and
    /// groups into the world). `compiled` holds groups already compiled
    /// from the same members (hosts sharing a group compile it once).
    pub fn host_with(
        &self,
        agent: &Agent,
        vteps: &BTreeMap<String, BTreeSet<Ipv4Addr>>,
        members: &BTreeMap<String, BTreeSet<Ipv4Addr>>,
        compiled: &mut BTreeMap<String, filter::GroupFilter>,
    ) -> HostState {
        let here: BTreeMap<&str, &Server> = self
            .servers
            .iter()
            .filter(|s| s.host.as_deref() == Some(agent.name.as_str()))
            .flat_map(|s| s.nic_ids.iter().map(move |n| (n.as_str(), s)))
            .collect();
        let subnets: BTreeMap<&str, &Subnet> =
            self.subnets.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut ports = Vec::new();
        let mut domains: BTreeMap<u32, L2Domain> = BTreeMap::new();
        let zones: BTreeMap<&str, u16> = self
            .vpcs
            .iter()
            .map(|v| (v.id.as_str(), u16::try_from(v.router_index).unwrap_or(0)))
            .collect();
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for n in self
            .nics
            .iter()
            .filter(|n| here.contains_key(n.id.as_str()))
        {
            let Some(subnet) = subnets.get(n.subnet_id.as_str()) else {
                continue;
            };
            if subnet.kind != SubnetKind::Guest {
                continue;
            }
            let mut ips = vec![n.ip];
            ips.extend(
                self.vips
                    .iter()
                    .filter(|v| v.nic_ids.contains(&n.id))
                    .map(|v| v.ip),
            );
            ips.sort();
            ips.dedup();
            used.extend(n.security_group_ids.iter().map(String::as_str));
            ports.push(HostPort {
                nic_id: n.id.clone(),
                ifname: port_ifname(&n.id),
                vni: subnet.vni,
                mac: n.mac.clone(),
                ips,
                source_dest_check: n.source_dest_check,
                security_groups: n.security_group_ids.clone(),
                vrrp_peers: filter::vrrp_peers(n, self.nics, self.vips),
                zone: zones.get(n.vpc_id.as_str()).copied().unwrap_or(0),
                dhcp: dhcp_lease(n, subnet, here.get(n.id.as_str()).copied(), self.dhcp),
            });
            domains.entry(subnet.vni).or_insert_with(|| L2Domain {
                subnet_id: subnet.id.clone(),
                vni: subnet.vni,
                vteps: vteps
                    .get(subnet.id.as_str())
                    .map(|set| {
                        set.iter()
                            .copied()
                            .filter(|ip| *ip != agent.underlay_ip)
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        ports.sort_by(|a, b| a.nic_id.cmp(&b.nic_id));
        let mut groups: Vec<filter::GroupFilter> = self
            .security_groups
            .iter()
            .filter(|g| used.contains(g.id.as_str()))
            .map(|g| {
                compiled
                    .entry(g.id.clone())
                    .or_insert_with(|| filter::compile_group(g, members))
                    .clone()
            })
            .collect();
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        HostState {
            domains: domains.into_values().collect(),
            ports,
            groups,
        }
    }
}
