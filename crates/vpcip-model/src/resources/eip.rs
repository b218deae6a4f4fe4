//! EIPs: modes, targets, NAT helpers.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EipMode {
    /// 1:1 NAT at the gateway; the guest does not see the EIP.
    #[default]
    Nat,
    /// Cut-through: the EIP is the NIC's own address, routed untranslated.
    Visible,
}

impl EipMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EipMode::Nat => "nat",
            EipMode::Visible => "visible",
        }
    }
}

/// What an EIP is bound to, as requested.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "kind", content = "id")]
pub enum EipTarget {
    /// A server: its primary NIC.
    Server(String),
    /// A NIC or secondary ENI.
    Nic(String),
    Vip(String),
}

/// An EIP. What it is bound to is one value, [`EipBinding`], so the
/// target, the server, the VPC, the private address and the mode cannot
/// disagree; the JSON (stored and on the wire) is the flat
/// [`EipDocument`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "EipDocument", into = "EipDocument")]
pub struct Eip {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub subnet_id: String,
    pub ip: Ipv4Addr,
    pub bandwidth_mbps: u32,
    pub binding: EipBinding,
    pub algs: Vec<Alg>,
}

/// What an EIP is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EipBinding {
    #[default]
    Unbound,
    /// A NIC (for a server: its primary NIC).
    Nic {
        nic_id: String,
        /// The NIC's server, while it is attached to one.
        server_id: Option<String>,
        vpc_id: String,
        /// The NIC's address, which the EIP maps to.
        private_ip: Ipv4Addr,
        mode: EipMode,
    },
    /// A VIP: whichever NIC holds it.
    Vip {
        vip_id: String,
        vpc_id: String,
        private_ip: Ipv4Addr,
        mode: EipMode,
    },
}

impl Eip {
    /// The mode of its binding (NAT when unbound).
    pub fn mode(&self) -> EipMode {
        match &self.binding {
            EipBinding::Unbound => EipMode::Nat,
            EipBinding::Nic { mode, .. } | EipBinding::Vip { mode, .. } => *mode,
        }
    }

    /// The bound NIC.
    pub fn nic_id(&self) -> Option<&str> {
        match &self.binding {
            EipBinding::Nic { nic_id, .. } => Some(nic_id),
            _ => None,
        }
    }

    /// The bound VIP.
    pub fn vip_id(&self) -> Option<&str> {
        match &self.binding {
            EipBinding::Vip { vip_id, .. } => Some(vip_id),
            _ => None,
        }
    }

    /// The bound NIC or VIP.
    pub fn target_id(&self) -> Option<&str> {
        self.nic_id().or(self.vip_id())
    }

    /// The server of the bound NIC, while attached.
    pub fn server_id(&self) -> Option<&str> {
        match &self.binding {
            EipBinding::Nic { server_id, .. } => server_id.as_deref(),
            _ => None,
        }
    }

    /// The private address the EIP maps to, when bound.
    pub fn private_ip(&self) -> Option<Ipv4Addr> {
        match &self.binding {
            EipBinding::Unbound => None,
            EipBinding::Nic { private_ip, .. } | EipBinding::Vip { private_ip, .. } => {
                Some(*private_ip)
            }
        }
    }

    /// The VPC of the bound NIC or VIP.
    pub fn vpc_id(&self) -> Option<&str> {
        match &self.binding {
            EipBinding::Unbound => None,
            EipBinding::Nic { vpc_id, .. } | EipBinding::Vip { vpc_id, .. } => Some(vpc_id),
        }
    }

    pub fn is_bound(&self) -> bool {
        self.binding != EipBinding::Unbound
    }
}

// The JSON form of an [`Eip`]: what the API answers and the store keeps.
/// An elastic IP: a public address of an EIP segment, bound to a NIC (NAT
/// or visible mode), to a VIP, or to nothing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EipDocument {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub subnet_id: String,
    #[schema(value_type = String, example = "192.168.202.7")]
    pub ip: Ipv4Addr,
    pub bandwidth_mbps: u32,
    pub mode: EipMode,
    /// The bound NIC (for a server: its primary NIC) or VIP.
    pub nic_id: Option<String>,
    pub vip_id: Option<String>,
    /// The server of the bound NIC, if attached.
    pub server_id: Option<String>,
    /// The private address the EIP maps to.
    #[schema(value_type = Option<String>)]
    pub private_ip: Option<Ipv4Addr>,
    pub vpc_id: Option<String>,
    /// The NAT helpers attached to its traffic (NAT mode carries these
    /// protocols' addresses in their payload).
    #[serde(default)]
    pub algs: Vec<Alg>,
}

impl From<Eip> for EipDocument {
    fn from(e: Eip) -> Self {
        let mode = e.mode();
        let (nic_id, vip_id, server_id, private_ip, vpc_id) = match e.binding {
            EipBinding::Unbound => (None, None, None, None, None),
            EipBinding::Nic {
                nic_id,
                server_id,
                vpc_id,
                private_ip,
                ..
            } => (
                Some(nic_id),
                None,
                server_id,
                Some(private_ip),
                Some(vpc_id),
            ),
            EipBinding::Vip {
                vip_id,
                vpc_id,
                private_ip,
                ..
            } => (None, Some(vip_id), None, Some(private_ip), Some(vpc_id)),
        };
        EipDocument {
            id: e.id,
            tenant: e.tenant,
            name: e.name,
            subnet_id: e.subnet_id,
            ip: e.ip,
            bandwidth_mbps: e.bandwidth_mbps,
            mode,
            nic_id,
            vip_id,
            server_id,
            private_ip,
            vpc_id,
            algs: e.algs,
        }
    }
}

impl TryFrom<EipDocument> for Eip {
    type Error = String;

    /// Refuses a document whose binding fields contradict each other.
    fn try_from(d: EipDocument) -> Result<Self, String> {
        let binding = match (d.nic_id, d.vip_id, d.private_ip, d.vpc_id) {
            (None, None, _, _) => EipBinding::Unbound,
            (Some(nic_id), None, Some(private_ip), Some(vpc_id)) => EipBinding::Nic {
                nic_id,
                server_id: d.server_id,
                vpc_id,
                private_ip,
                mode: d.mode,
            },
            (None, Some(vip_id), Some(private_ip), Some(vpc_id)) if d.server_id.is_none() => {
                EipBinding::Vip {
                    vip_id,
                    vpc_id,
                    private_ip,
                    mode: d.mode,
                }
            }
            _ => {
                return Err(format!(
                    "EIP {}: a binding needs exactly one of nic_id and vip_id, with private_ip and vpc_id (and server_id only for a NIC)",
                    d.id
                ));
            }
        };
        Ok(Eip {
            id: d.id,
            tenant: d.tenant,
            name: d.name,
            subnet_id: d.subnet_id,
            ip: d.ip,
            bandwidth_mbps: d.bandwidth_mbps,
            binding,
            algs: d.algs,
        })
    }
}

/// The OpenAPI schema of an EIP is its document's, under the name `Eip`.
impl utoipa::PartialSchema for Eip {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <EipDocument as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Eip {
    fn name() -> std::borrow::Cow<'static, str> {
        "Eip".into()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <EipDocument as utoipa::ToSchema>::schemas(schemas);
    }
}

/// A NAT helper (application-level gateway) the kernel has: it follows the
/// protocol's control connection, lets its related connections through and
/// rewrites the addresses it carries to the EIP.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Alg {
    /// FTP, active and passive (TCP 21).
    Ftp,
    /// SIP over UDP and TCP (5060), and its media.
    Sip,
    /// TFTP (UDP 69).
    Tftp,
    /// H.323: Q.931 (TCP 1720) and RAS (UDP 1719).
    H323,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Ftp => "ftp",
            Alg::Sip => "sip",
            Alg::Tftp => "tftp",
            Alg::H323 => "h323",
        }
    }
}

impl std::str::FromStr for Alg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ftp" => Ok(Alg::Ftp),
            "sip" => Ok(Alg::Sip),
            "tftp" => Ok(Alg::Tftp),
            "h323" => Ok(Alg::H323),
            other => Err(format!("no NAT helper {other}: ftp, sip, tftp or h323")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(binding: serde_json::Value) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": "eip-1", "tenant": "t", "name": "", "subnet_id": "seg",
            "ip": "192.0.2.7", "bandwidth_mbps": 5, "mode": "nat",
            "nic_id": null, "vip_id": null, "server_id": null,
            "private_ip": null, "vpc_id": null, "algs": [],
        });
        for (k, x) in binding.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    #[test]
    fn the_json_is_the_flat_document_both_ways() {
        let bound = doc(serde_json::json!({
            "mode": "visible", "nic_id": "eni-1", "server_id": "vm-1",
            "private_ip": "10.0.0.5", "vpc_id": "vpc-1",
        }));
        let eip: Eip = serde_json::from_value(bound.clone()).unwrap();
        assert_eq!(
            eip.binding,
            EipBinding::Nic {
                nic_id: "eni-1".into(),
                server_id: Some("vm-1".into()),
                vpc_id: "vpc-1".into(),
                private_ip: "10.0.0.5".parse().unwrap(),
                mode: EipMode::Visible,
            }
        );
        assert_eq!(serde_json::to_value(&eip).unwrap(), bound);
        let unbound: Eip = serde_json::from_value(doc(serde_json::json!({}))).unwrap();
        assert_eq!(unbound.binding, EipBinding::Unbound);
        assert_eq!(unbound.mode(), EipMode::Nat);
    }

    #[test]
    fn a_document_whose_binding_contradicts_itself_is_refused() {
        for bad in [
            // Two targets.
            serde_json::json!({"nic_id": "eni-1", "vip_id": "vip-1", "private_ip": "10.0.0.5", "vpc_id": "v"}),
            // A target without the address it maps to.
            serde_json::json!({"nic_id": "eni-1", "vpc_id": "v"}),
            // A VIP does not run on a server.
            serde_json::json!({"vip_id": "vip-1", "server_id": "vm-1", "private_ip": "10.0.0.5", "vpc_id": "v"}),
        ] {
            let err = serde_json::from_value::<Eip>(doc(bad.clone())).unwrap_err();
            assert!(
                err.to_string().contains("exactly one of nic_id and vip_id"),
                "{bad}: {err}"
            );
        }
    }
}
