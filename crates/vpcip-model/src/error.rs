//! The refusals of the domain rules: each names the rule and the values, and
//! carries a stable machine-readable code that the API returns as is.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// How a refusal maps onto HTTP; the API decides the status from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request itself is malformed or breaks a rule (400/422).
    Invalid,
    /// A named resource does not exist (or is not the caller's).
    NotFound,
    /// The request is valid but conflicts with the current state (409).
    Conflict,
    /// The caller may not do this (403).
    Forbidden,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} name {name:?} is already taken")]
    NameTaken { kind: &'static str, name: String },
    #[error(
        "client_token {token:?} was used for a different request ({kind} {id}): use a new token for a new request"
    )]
    IdempotencyConflict {
        token: String,
        kind: &'static str,
        id: String,
    },
    #[error("{kind} {id} is in use: {reason}")]
    InUse {
        kind: &'static str,
        id: String,
        reason: String,
    },
    #[error("only the platform operator may {action}")]
    Forbidden { action: String },

    #[error("CIDR block {block} of VPC {vpc} overlaps its block {other}")]
    VpcCidrOverlap {
        vpc: String,
        block: Ipv4Net,
        other: Ipv4Net,
    },
    #[error("VPC {vpc} already has {count} secondary CIDR blocks (limit {limit})")]
    VpcCidrLimit {
        vpc: String,
        count: usize,
        limit: usize,
    },
    #[error("CIDR block {block} is not a block of VPC {vpc}")]
    VpcCidrUnknown { vpc: String, block: Ipv4Net },
    #[error("CIDR block {block} is the primary block of VPC {vpc} and cannot be removed")]
    VpcCidrPrimary { vpc: String, block: Ipv4Net },
    #[error("CIDR block {block} of VPC {vpc} still holds subnet {subnet} ({cidr})")]
    VpcCidrInUse {
        vpc: String,
        block: Ipv4Net,
        subnet: String,
        cidr: Ipv4Net,
    },
    #[error("the default VPC cannot be {action}")]
    DefaultVpc { action: &'static str },

    #[error("subnet {cidr} lies in no CIDR block of VPC {vpc} ({blocks})")]
    SubnetOutsideVpc {
        cidr: Ipv4Net,
        vpc: String,
        blocks: String,
    },
    #[error("subnet {cidr} overlaps subnet {other} ({other_cidr}) in VPC {vpc}")]
    SubnetOverlap {
        cidr: Ipv4Net,
        vpc: String,
        other: String,
        other_cidr: Ipv4Net,
    },
    #[error("EIP subnets live only in the default VPC; VPC {vpc} is not it")]
    EipSubnetOutsideDefault { vpc: String },
    #[error("EIP segment {segment} overlaps host network {host_network}")]
    SegmentOverlapsHostNetwork {
        segment: Ipv4Net,
        host_network: Ipv4Net,
    },
    #[error("host network {host_network} overlaps EIP segment {segment}")]
    HostNetworkOverlapsSegment {
        host_network: Ipv4Net,
        segment: Ipv4Net,
    },
    #[error("allocation range {start}-{end} is invalid: {reason}")]
    InvalidRange {
        start: Ipv4Addr,
        end: Ipv4Addr,
        reason: String,
    },
    #[error("subnet {subnet} is a {kind} subnet, {need} is needed")]
    SubnetKind {
        subnet: String,
        kind: &'static str,
        need: &'static str,
    },

    #[error("address {addr} is outside the allocation range {start}-{end} of subnet {subnet}")]
    AddressOutOfRange {
        addr: Ipv4Addr,
        subnet: String,
        start: Ipv4Addr,
        end: Ipv4Addr,
    },
    #[error("address {addr} of subnet {subnet} is already in use")]
    AddressInUse { addr: Ipv4Addr, subnet: String },
    #[error("subnet {subnet} has no free address left in {start}-{end}")]
    AddressExhausted {
        subnet: String,
        start: Ipv4Addr,
        end: Ipv4Addr,
    },

    #[error("no {pool} number is free: all of 1 to {max} are taken")]
    NumbersExhausted { pool: String, max: u32 },

    #[error("a NIC takes 1 to 5 security groups, {count} given")]
    SecurityGroupCount { count: usize },
    #[error("security group rule {rule}: {reason}")]
    SgRuleInvalid { rule: String, reason: String },
    #[error("security group {group} would hold {count} rules; the limit is {limit} per group")]
    SgRuleLimit {
        group: String,
        count: usize,
        limit: usize,
    },
    #[error(
        "security groups of one NIC must be of one type: {first} is {first_kind}, {other} is {other_kind}"
    )]
    SecurityGroupMixedKinds {
        first: String,
        first_kind: &'static str,
        other: String,
        other_kind: &'static str,
    },
    #[error("security group {group} is managed by the platform and cannot be chosen")]
    SecurityGroupManaged { group: String },
    #[error("security group {group} is in VPC {group_vpc}, NIC is in VPC {nic_vpc}")]
    SecurityGroupWrongVpc {
        group: String,
        group_vpc: String,
        nic_vpc: String,
    },

    #[error("ENI {nic} is in zone {nic_zone}, server {server} is in zone {server_zone}")]
    ZoneMismatch {
        nic: String,
        nic_zone: String,
        server: String,
        server_zone: String,
    },
    #[error("subnet {subnet} is in zone {subnet_zone}, server {server} is in zone {server_zone}")]
    SubnetZoneMismatch {
        subnet: String,
        subnet_zone: String,
        server: String,
        server_zone: String,
    },
    #[error("ENI {nic} is already attached to server {server}")]
    NicAttached { nic: String, server: String },
    #[error("ENI {nic} is not attached to any server")]
    NicNotAttached { nic: String },
    #[error("NIC {nic} is the primary NIC of server {server} and cannot be detached")]
    NicPrimary { nic: String, server: String },

    #[error("VIP {vip} is already bound to {count} NICs (limit {limit})")]
    VipNicLimit {
        vip: String,
        count: usize,
        limit: usize,
    },
    #[error("NIC {nic} already holds {count} VIPs (limit {limit})")]
    NicVipLimit {
        nic: String,
        count: usize,
        limit: usize,
    },
    #[error("VIP {vip} is in subnet {vip_subnet}, NIC {nic} is in subnet {nic_subnet}")]
    VipSubnetMismatch {
        vip: String,
        vip_subnet: String,
        nic: String,
        nic_subnet: String,
    },
    #[error("VIP {vip} is already bound to NIC {nic}")]
    VipAlreadyBound { vip: String, nic: String },
    #[error("VIP {vip} is not bound to NIC {nic}")]
    VipNotBound { vip: String, nic: String },

    #[error("{target_kind} {target} already has EIP {eip}")]
    TargetHasEip {
        target_kind: &'static str,
        target: String,
        eip: Ipv4Addr,
    },
    #[error(
        "EIP {eip} is already bound to {target_kind} {target}; pass allow_reassociation to move it"
    )]
    EipBound {
        eip: Ipv4Addr,
        target_kind: &'static str,
        target: String,
    },
    #[error("EIP {eip} is not bound")]
    EipNotBound { eip: Ipv4Addr },
    #[error(
        "visible mode routes EIP {eip} untranslated, so the {target_kind}'s address must be the EIP; {target} has {addr}"
    )]
    VisibleAddressMismatch {
        eip: Ipv4Addr,
        target_kind: &'static str,
        target: String,
        addr: Ipv4Addr,
    },
    #[error("server {server} has no primary NIC")]
    ServerWithoutNic { server: String },
    #[error(
        "subnet {subnet} lies in EIP segment {segment}, so every address in it is public: a NIC or VIP there takes the address of an EIP of yours that is bound to nothing else ({reason})"
    )]
    VisibleSubnetAddress {
        subnet: String,
        segment: Ipv4Net,
        reason: String,
    },
    #[error("tenant {tenant} already has {count} {kind}s: its quota is {limit}")]
    QuotaExceeded {
        tenant: String,
        kind: &'static str,
        count: usize,
        limit: u32,
    },

    #[error("this agent token acts for agent {agent} ({role}) only, not {requested}")]
    AgentIdentity {
        agent: String,
        role: &'static str,
        requested: String,
    },
    #[error(
        "the agent token for {agent} names no role (it was made before agent tokens were bound to one agent): make a new one with `vpcip token create --agent {agent} --role gateway|host`"
    )]
    AgentTokenWithoutRole { agent: String },
    #[error("underlay address {addr} is {reason}: no node is reachable at it")]
    UnderlayReserved { addr: Ipv4Addr, reason: String },
    #[error(
        "underlay address {addr} lies in EIP segment {segment}, which the physical network routes to the gateways"
    )]
    UnderlayInEipSegment { addr: Ipv4Addr, segment: Ipv4Net },
    #[error(
        "underlay address {addr} lies in no host network ({host_networks}): register its network first (vpcip host-network create)"
    )]
    UnderlayOutsideHostNetworks {
        addr: Ipv4Addr,
        host_networks: String,
    },
    #[error("underlay address {addr} is already held by {holder}")]
    UnderlayInUse { addr: Ipv4Addr, holder: String },
    #[error(
        "gateway {gateway} is the last gateway and {} bound: deleting it makes them unreachable; pass --force (API: force=true) to delete anyway",
        eips_bound(*.eips)
    )]
    LastGateway { gateway: String, eips: usize },
}

/// "1 EIP is" / "3 EIPs are".
fn eips_bound(n: usize) -> String {
    if n == 1 {
        "1 EIP is".into()
    } else {
        format!("{n} EIPs are")
    }
}

impl RuleError {
    /// The stable code clients match on. Never change an existing one.
    pub fn code(&self) -> &'static str {
        use RuleError::*;
        match self {
            InvalidArgument { .. } => "invalid_argument",
            NotFound { .. } => "not_found",
            NameTaken { .. } => "name_taken",
            IdempotencyConflict { .. } => "idempotency_conflict",
            InUse { .. } => "resource_in_use",
            Forbidden { .. } => "forbidden",
            VpcCidrOverlap { .. } => "vpc_cidr_overlap",
            VpcCidrLimit { .. } => "vpc_cidr_limit",
            VpcCidrUnknown { .. } => "vpc_cidr_unknown",
            VpcCidrPrimary { .. } => "vpc_cidr_primary",
            VpcCidrInUse { .. } => "vpc_cidr_in_use",
            DefaultVpc { .. } => "default_vpc",
            SubnetOutsideVpc { .. } => "subnet_outside_vpc",
            SubnetOverlap { .. } => "subnet_overlap",
            EipSubnetOutsideDefault { .. } => "eip_subnet_outside_default_vpc",
            SegmentOverlapsHostNetwork { .. } => "segment_overlaps_host_network",
            HostNetworkOverlapsSegment { .. } => "host_network_overlaps_segment",
            InvalidRange { .. } => "invalid_range",
            SubnetKind { .. } => "subnet_kind",
            AddressOutOfRange { .. } => "address_out_of_range",
            AddressInUse { .. } => "address_in_use",
            AddressExhausted { .. } => "address_exhausted",
            NumbersExhausted { .. } => "numbers_exhausted",
            SecurityGroupCount { .. } => "security_group_count",
            SgRuleInvalid { .. } => "sg_rule_invalid",
            SgRuleLimit { .. } => "sg_rule_limit",
            SecurityGroupMixedKinds { .. } => "security_group_mixed_kinds",
            SecurityGroupManaged { .. } => "security_group_managed",
            SecurityGroupWrongVpc { .. } => "security_group_wrong_vpc",
            ZoneMismatch { .. } => "zone_mismatch",
            SubnetZoneMismatch { .. } => "zone_mismatch",
            NicAttached { .. } => "nic_attached",
            NicNotAttached { .. } => "nic_not_attached",
            NicPrimary { .. } => "nic_primary",
            VipNicLimit { .. } => "vip_nic_limit",
            NicVipLimit { .. } => "nic_vip_limit",
            VipSubnetMismatch { .. } => "vip_subnet_mismatch",
            VipAlreadyBound { .. } => "vip_already_bound",
            VipNotBound { .. } => "vip_not_bound",
            TargetHasEip { .. } => "target_has_eip",
            EipBound { .. } => "eip_bound",
            EipNotBound { .. } => "eip_not_bound",
            VisibleAddressMismatch { .. } => "visible_address_mismatch",
            ServerWithoutNic { .. } => "server_without_nic",
            VisibleSubnetAddress { .. } => "visible_subnet_address",
            QuotaExceeded { .. } => "quota_exceeded",
            AgentIdentity { .. } => "agent_identity",
            AgentTokenWithoutRole { .. } => "agent_token_without_role",
            UnderlayReserved { .. } => "underlay_reserved",
            UnderlayInEipSegment { .. } => "underlay_in_eip_segment",
            UnderlayOutsideHostNetworks { .. } => "underlay_outside_host_networks",
            UnderlayInUse { .. } => "underlay_in_use",
            LastGateway { .. } => "last_gateway",
        }
    }

    pub fn class(&self) -> ErrorClass {
        use RuleError::*;
        match self {
            NotFound { .. } => ErrorClass::NotFound,
            Forbidden { .. } | AgentIdentity { .. } | AgentTokenWithoutRole { .. } => {
                ErrorClass::Forbidden
            }
            InvalidArgument { .. }
            | VpcCidrOverlap { .. }
            | VpcCidrLimit { .. }
            | VpcCidrUnknown { .. }
            | VpcCidrPrimary { .. }
            | DefaultVpc { .. }
            | SubnetOutsideVpc { .. }
            | EipSubnetOutsideDefault { .. }
            | InvalidRange { .. }
            | SubnetKind { .. }
            | AddressOutOfRange { .. }
            | SecurityGroupCount { .. }
            | SgRuleInvalid { .. }
            | SgRuleLimit { .. }
            | SecurityGroupMixedKinds { .. }
            | SecurityGroupManaged { .. }
            | SecurityGroupWrongVpc { .. }
            | ZoneMismatch { .. }
            | SubnetZoneMismatch { .. }
            | VipSubnetMismatch { .. }
            | VisibleAddressMismatch { .. }
            | NicPrimary { .. }
            | ServerWithoutNic { .. }
            | VisibleSubnetAddress { .. }
            | UnderlayReserved { .. }
            | UnderlayInEipSegment { .. }
            | UnderlayOutsideHostNetworks { .. } => ErrorClass::Invalid,
            _ => ErrorClass::Conflict,
        }
    }

    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RuleError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        RuleError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

/// A recommendation of the vendor manuals that was not followed: the call succeeds and
/// the caller is told.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Warning {
    pub code: String,
    pub message: String,
}
