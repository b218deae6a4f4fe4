//! Where everything lives in the REST API: each path written once, used
//! by the server's routes (through the handlers' OpenAPI annotations), the
//! client, the CLI and the tests. `{id}` stands for an ID or a name.

use crate::resources::*;

pub const HEALTHZ: &str = "/healthz";
pub const STATUS: &str = "/v1/status";
pub const PHYSICAL_ROUTES: &str = "/v1/physical-routes";

pub const TOKENS: &str = "/v1/tokens";
pub const TOKEN: &str = "/v1/tokens/{id}";

pub const ZONES: &str = "/v1/zones";
pub const ZONE: &str = "/v1/zones/{id}";
pub const HOST_NETWORKS: &str = "/v1/host-networks";
pub const HOST_NETWORK: &str = "/v1/host-networks/{id}";
pub const GATEWAYS: &str = "/v1/gateways";
pub const GATEWAY: &str = "/v1/gateways/{id}";

pub const VPCS: &str = "/v1/vpcs";
pub const VPC: &str = "/v1/vpcs/{id}";
pub const VPC_ADD_CIDR: &str = "/v1/vpcs/{id}/add-cidr";
pub const VPC_REMOVE_CIDR: &str = "/v1/vpcs/{id}/remove-cidr";
pub const SUBNETS: &str = "/v1/subnets";
pub const SUBNET: &str = "/v1/subnets/{id}";
pub const SECURITY_GROUPS: &str = "/v1/security-groups";
pub const SECURITY_GROUP: &str = "/v1/security-groups/{id}";
pub const SECURITY_GROUP_RULES: &str = "/v1/security-groups/{id}/rules";
pub const SECURITY_GROUP_RULE: &str = "/v1/security-groups/{id}/rules/{rule}";

pub const SERVERS: &str = "/v1/servers";
pub const SERVER: &str = "/v1/servers/{id}";
pub const SERVER_NICS: &str = "/v1/servers/{id}/nics";
pub const NICS: &str = "/v1/nics";
pub const NIC: &str = "/v1/nics/{id}";
pub const NIC_ATTACH: &str = "/v1/nics/{id}/attach";
pub const NIC_DETACH: &str = "/v1/nics/{id}/detach";
pub const NIC_DROPS: &str = "/v1/nics/{id}/drops";

pub const VIPS: &str = "/v1/vips";
pub const VIP: &str = "/v1/vips/{id}";
pub const VIP_BIND: &str = "/v1/vips/{id}/bind";
pub const VIP_UNBIND: &str = "/v1/vips/{id}/unbind";
pub const VIP_HOLDER: &str = "/v1/vips/{id}/holder";

pub const EIPS: &str = "/v1/eips";
pub const EIPS_VISIBLE: &str = "/v1/eips/visible";
pub const EIP: &str = "/v1/eips/{id}";
pub const EIP_BIND: &str = "/v1/eips/{id}/bind";
pub const EIP_UNBIND: &str = "/v1/eips/{id}/unbind";
pub const EIP_COUNTERS: &str = "/v1/eips/{id}/counters";
pub const EIP_TRAFFIC: &str = "/v1/eips/{id}/traffic";

pub const AGENTS: &str = "/v1/agents";
pub const AGENT_REPORT: &str = "/v1/agents/{id}/report";
pub const AGENT_COUNTERS: &str = "/v1/agents/{id}/counters";
pub const AGENT_DESIRED: &str = "/v1/agents/{id}/desired";
pub const AGENT_WATCH: &str = "/v1/agents/{id}/watch";

/// A paginated collection of the API and the type of its items.
pub trait Collection {
    /// The collection's path (`GET` lists, `POST` creates).
    const PATH: &'static str;
    /// An item's path (`GET` shows, `PATCH` updates, `DELETE` deletes).
    const ITEM: &'static str;
}

macro_rules! collection {
    ($($t:ty => $path:ident, $item:ident;)*) => {
        $(impl Collection for $t {
            const PATH: &'static str = $path;
            const ITEM: &'static str = $item;
        })*
    };
}

collection! {
    Zone => ZONES, ZONE;
    HostNetwork => HOST_NETWORKS, HOST_NETWORK;
    Gateway => GATEWAYS, GATEWAY;
    Vpc => VPCS, VPC;
    Subnet => SUBNETS, SUBNET;
    SecurityGroup => SECURITY_GROUPS, SECURITY_GROUP;
    Server => SERVERS, SERVER;
    Nic => NICS, NIC;
    Vip => VIPS, VIP;
    Eip => EIPS, EIP;
}

/// `template` with its `{…}` parameters replaced, in order, by `args`,
/// each escaped as one path segment. A template with more parameters than
/// `args` keeps the rest as written (a test sees it: the server answers
/// 404).
pub fn at(template: &str, args: &[&str]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut args = args.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        match args.next() {
            Some(a) => out.push_str(&segment(a)),
            None => out.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// An item of collection `T`: its path with `id` filled in.
pub fn item<T: Collection>(id: &str) -> String {
    at(T::ITEM, &[id])
}

/// A path segment is an ID or a name: escape what a URL would misread.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_filled_in_order_and_escaped() {
        assert_eq!(at(EIP_BIND, &["eip-1"]), "/v1/eips/eip-1/bind");
        assert_eq!(
            at(SECURITY_GROUP_RULE, &["web", "ingress:tcp:80:0.0.0.0/0"]),
            "/v1/security-groups/web/rules/ingress%3Atcp%3A80%3A0.0.0.0%2F0"
        );
        assert_eq!(at(EIPS, &["unused"]), "/v1/eips");
        assert_eq!(at(EIP, &[]), "/v1/eips/{id}");
        assert_eq!(item::<Nic>("a/b c"), "/v1/nics/a%2Fb%20c");
    }
}
