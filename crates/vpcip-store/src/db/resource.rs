//! Resources as JSON documents in one table.

use super::*;

/// What the store knows how to keep: every resource kind of the model.
pub trait Resource: Serialize + DeserializeOwned + Send + Sync {
    const KIND: Kind;
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn tenant(&self) -> &str {
        SYSTEM_TENANT
    }
    /// The resource this one lives in (indexed for child lookups).
    fn parent(&self) -> Option<&str> {
        None
    }
    /// What it is attached to: a NIC's server, a server's host (indexed
    /// with the kind: a host's load is counted by it).
    fn attached(&self) -> Option<&str> {
        None
    }
    fn label(&self) -> &str {
        label(self.name(), self.id())
    }
}

/// `impl Resource`: the platform's kinds (no tenant), and the tenants'
/// kinds with the fields that name their parent and what they are
/// attached to.
macro_rules! resource {
    ($t:ty, $kind:expr) => {
        impl Resource for $t {
            const KIND: Kind = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.name
            }
        }
    };
    ($t:ty, $kind:expr, tenant $(, parent = $parent:ident)? $(, attached = $attached:ident)?) => {
        impl Resource for $t {
            const KIND: Kind = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn tenant(&self) -> &str {
                &self.tenant
            }
            $(fn parent(&self) -> Option<&str> {
                Some(&self.$parent)
            })?
            $(fn attached(&self) -> Option<&str> {
                self.$attached.as_deref()
            })?
        }
    };
}

resource!(Zone, Kind::Zone);
resource!(HostNetwork, Kind::HostNetwork);
resource!(Gateway, Kind::Gateway);
resource!(Agent, Kind::Agent);
resource!(Vpc, Kind::Vpc, tenant);
resource!(Subnet, Kind::Subnet, tenant, parent = vpc_id);
resource!(SecurityGroup, Kind::SecurityGroup, tenant, parent = vpc_id);
resource!(Server, Kind::Server, tenant, attached = host);
resource!(
    Nic,
    Kind::Nic,
    tenant,
    parent = subnet_id,
    attached = server_id
);
resource!(Vip, Kind::Vip, tenant, parent = subnet_id);
resource!(Eip, Kind::Eip, tenant, parent = subnet_id);

pub fn new_id(kind: Kind) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{}-{tail}", kind.prefix())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_doc<T: DeserializeOwned>(doc: &str) -> Result<T, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("bad document: {e}")))
}
