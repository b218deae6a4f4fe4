//! A gateway's desired state: its VPC routers, their NAT and shaping, and
//! the gateway cluster's slots and elections.

use super::*;

/// One EIP's 1:1 NAT on a VPC router. A visible-mode EIP is an identity
/// entry (EIP → EIP): the router's rules then pass it untranslated, and its
/// connections are tracked like every other EIP's.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct NatEntry {
    #[schema(value_type = String)]
    pub eip: Ipv4Addr,
    #[schema(value_type = String)]
    pub private_ip: Ipv4Addr,
    pub eip_id: String,
    /// Its bandwidth limit on the gateway; None when it has none (the
    /// maximum, [`crate::rules::MAX_BANDWIDTH_MBPS`], is the line rate).
    #[serde(default)]
    pub shaping: Option<Shaping>,
    /// The NAT helpers attached to its traffic.
    #[serde(default)]
    pub algs: Vec<Alg>,
}

/// An EIP's bandwidth limit, shaped in both directions on its router's
/// links: HTB class `1:<class>` at `mbps` Mbit/s.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shaping {
    pub class: u16,
    pub mbps: u32,
}

/// HTB classes for one router's limited EIPs (in address order): the
/// address's low 16 bits when that class is free, else the next free one
/// (1 to 0xfffe), so an EIP keeps its class while others come and go. None
/// for the EIPs beyond the 65,534 classes one router has.
pub fn assign_classes(eips: &[Ipv4Addr]) -> Vec<Option<u16>> {
    const LAST: u32 = 0xfffe;
    let mut taken = vec![false; LAST as usize + 1];
    let mut free = LAST;
    eips.iter()
        .map(|ip| {
            if free == 0 {
                return None;
            }
            let mut c = u32::from(natural_class(*ip));
            while taken[c as usize] {
                c = if c == LAST { 1 } else { c + 1 };
            }
            taken[c as usize] = true;
            free -= 1;
            u16::try_from(c).ok()
        })
        .collect()
}

/// An EIP's own HTB class: its address's low 16 bits, kept within 1 to
/// 0xfffe. Where no two limited EIPs of a router share theirs, each has
/// its own ([`assign_classes`]).
pub fn natural_class(ip: Ipv4Addr) -> u16 {
    u16::try_from((u32::from(ip) & 0xffff).clamp(1, 0xfffe)).unwrap_or(1)
}

/// Whether EIP `e` is shaped on its router (a bandwidth below the line
/// rate): it then takes an HTB class.
pub fn is_limited(e: &Eip) -> bool {
    e.bandwidth_mbps < crate::rules::MAX_BANDWIDTH_MBPS
}

/// The NAT entry of a bound EIP (None unbound), with its HTB class if it
/// is limited.
pub fn nat_entry(e: &Eip, class: Option<u16>) -> Option<NatEntry> {
    let p = e.private_ip()?;
    Some(NatEntry {
        eip: e.ip,
        private_ip: if e.mode() == EipMode::Visible {
            e.ip
        } else {
            p
        },
        eip_id: e.id.clone(),
        shaping: class.map(|class| Shaping {
            class,
            mbps: e.bandwidth_mbps,
        }),
        algs: e.algs.clone(),
    })
}

/// A subnet's L2 domain: its VXLAN network identifier and the VTEPs (the
/// underlay addresses of the other nodes with a port in it) that broadcast,
/// unknown-unicast and multicast frames are replicated to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct L2Domain {
    pub subnet_id: String,
    pub vni: u32,
    #[schema(value_type = Vec<String>)]
    pub vteps: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RouterSubnet {
    #[serde(flatten)]
    pub l2: L2Domain,
    #[schema(value_type = String)]
    pub cidr: Ipv4Net,
    #[schema(value_type = Option<String>)]
    pub gateway: Option<Ipv4Addr>,
}

/// A VPC's router on a gateway node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct VpcRouter {
    pub vpc_id: String,
    /// The router's number: its link to the gateway node is
    /// [`router_link`]`(index)`.
    pub index: u32,
    /// The slot it is placed on ([`Cluster::slots`]).
    #[serde(default)]
    pub slot: u8,
    pub subnets: Vec<RouterSubnet>,
    /// The EIPs bound in this VPC, NAT and visible mode (the latter as
    /// identity entries); the gateway node routes each to this router.
    pub nat: Vec<NatEntry>,
    /// The visible-mode EIPs among them.
    #[schema(value_type = Vec<String>)]
    pub visible: Vec<Ipv4Addr>,
    /// The VPC's VIPs: the router reports which MAC holds each.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub vips: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
pub struct GatewayState {
    pub routers: Vec<VpcRouter>,
    /// The EIP segments: addresses in them that are not bound are
    /// unreachable at the gateway rather than sent back to the physical
    /// network.
    #[schema(value_type = Vec<String>)]
    pub eip_segments: Vec<Ipv4Net>,
    /// The infrastructure VMs must never reach (the host networks and the
    /// agents' addresses): the gateway drops what its routers send there,
    /// the default SNAT and EIP traffic included, unless
    /// [`Self::infra_allow`] lists it.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub infrastructure: Vec<Ipv4Net>,
    /// The operator's explicit exceptions (e.g. a DNS resolver on the
    /// underlay); empty unless configured.
    #[serde(default)]
    pub infra_allow: Vec<InfraService>,
    /// This gateway's default SNAT address ([`crate::Gateway::snat_ip`]):
    /// what the routers masquerade leaves the node from it, and nothing
    /// leaves without it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub snat_ip: Option<Ipv4Addr>,
    /// The gateway cluster: who carries what, where the others are, BGP.
    #[serde(default)]
    pub cluster: Cluster,
}

/// VRRP among the gateways: advertisement interval, centiseconds (three
/// missed adverts and a dead gateway's VPCs move: ~0.16 s).
pub const GATEWAY_ADVERT_CS: u16 = 5;

/// The gateway cluster as one gateway sees it. Every gateway holds every
/// VPC router with the same maps (a 1:1 NAT is a bijection: any of them
/// translates an established flow mid-stream); the VPCs placed on a slot
/// pass through the gateway that wins that slot's VRRP election, which
/// also announces their EIPs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
pub struct Cluster {
    /// This gateway's own slot (its VRRP router ID).
    pub slot: u8,
    /// Drained: it wins no election while another gateway lives, and
    /// announces nothing.
    pub drained: bool,
    /// VRRP advertisement interval among the gateways, centiseconds.
    pub advert_cs: u16,
    /// The other gateways' underlay addresses: where its adverts go.
    #[schema(value_type = Vec<String>)]
    pub peers: Vec<Ipv4Addr>,
    /// Every slot of the cluster.
    pub slots: Vec<Slot>,
    /// Its BGP sessions; None: static routes.
    pub bgp: Option<crate::BgpConfig>,
}

impl Cluster {
    pub fn slot(&self, vrid: u8) -> Option<&Slot> {
        self.slots.iter().find(|s| s.vrid == vrid)
    }
}

/// One slot: a gateway's share of the VPCs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Slot {
    pub vrid: u8,
    /// The gateway it is placed on.
    pub owner: String,
    /// This gateway's VRRP priority for it: 250 for its owner, one of
    /// 101 to 200 for the others (distinct: one backup wins), 1 when
    /// drained.
    pub priority: u8,
    /// The owner's default SNAT address: the slot's VPCs leave from it
    /// whichever gateway carries them, so their connections survive a
    /// move when the VM speaks first.
    #[schema(value_type = Option<String>)]
    pub snat_ip: Option<Ipv4Addr>,
}

/// FNV-1a: a hash that never changes between releases (placements and
/// priorities must not move when the controller is upgraded).
fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Each gateway's slot: its own, or (gateways registered before clusters,
/// slot 0) the lowest free ones in ID order.
pub fn gateway_slots(gateways: &[Gateway]) -> BTreeMap<&str, u8> {
    let mut taken: BTreeSet<u8> = gateways.iter().map(|g| g.slot).filter(|s| *s > 0).collect();
    let mut out: BTreeMap<&str, u8> = gateways
        .iter()
        .filter(|g| g.slot > 0)
        .map(|g| (g.id.as_str(), g.slot))
        .collect();
    let mut unnumbered: Vec<&Gateway> = gateways.iter().filter(|g| g.slot == 0).collect();
    unnumbered.sort_by(|a, b| a.id.cmp(&b.id));
    for g in unnumbered {
        if let Some(free) = (1..=255u8).find(|s| !taken.contains(s)) {
            taken.insert(free);
            out.insert(g.id.as_str(), free);
        }
    }
    out
}

/// The slot VPC `vpc_id` is placed on: rendezvous hashing over the
/// gateways, so adding or removing one moves only its share.
pub fn placement(vpc_id: &str, gateways: &[Gateway], slots: &BTreeMap<&str, u8>) -> Option<u8> {
    gateways
        .iter()
        .filter_map(|g| Some((stable_hash(&[vpc_id, &g.id]), *slots.get(g.id.as_str())?)))
        .max()
        .map(|(_, s)| s)
}

/// Gateway `me`'s VRRP priority for the slot owned by `owner`.
pub(super) fn slot_priority(me: &Gateway, owner: &Gateway, vrid: u8, gateways: &[Gateway]) -> u8 {
    if me.drained {
        return 1;
    }
    if me.id == owner.id {
        return 250;
    }
    let v = vrid.to_string();
    let mut others: Vec<&Gateway> = gateways
        .iter()
        .filter(|g| g.id != owner.id && !g.drained)
        .collect();
    others.sort_by_key(|g| (std::cmp::Reverse(stable_hash(&[&v, &g.id])), g.id.clone()));
    let rank = others.iter().position(|g| g.id == me.id).unwrap_or(0);
    200u8.saturating_sub(u8::try_from(rank.min(99)).unwrap_or(99))
}
/// One infrastructure service VMs may reach: `udp 192.0.2.53 53`.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub struct InfraService {
    pub protocol: InfraProtocol,
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
    pub port: u16,
}

#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum InfraProtocol {
    Tcp,
    Udp,
}

impl InfraProtocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            InfraProtocol::Tcp => 6,
            InfraProtocol::Udp => 17,
        }
    }
}

impl std::fmt::Display for InfraService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.protocol {
            InfraProtocol::Tcp => "tcp",
            InfraProtocol::Udp => "udp",
        };
        write!(f, "{p} {} {}", self.ip, self.port)
    }
}

impl std::str::FromStr for InfraService {
    type Err = String;

    /// `tcp|udp ADDRESS PORT`, as the server's configuration file lists it.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("infrastructure service `{s}`: expected `tcp|udp ADDRESS PORT`");
        let mut words = s.split_whitespace();
        let (Some(p), Some(ip), Some(port), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(bad());
        };
        let protocol = match p {
            "tcp" => InfraProtocol::Tcp,
            "udp" => InfraProtocol::Udp,
            _ => return Err(bad()),
        };
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 || ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(bad());
        }
        Ok(InfraService { protocol, ip, port })
    }
}
