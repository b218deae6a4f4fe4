//! Reads shaped for pages that show many resources at once (the web
//! console): one VPC's contents by its indexes, and a text search that
//! reads only the records containing the text.

use vpcip_model::*;

use crate::db::{Resource, SHARED, Scope, from_doc};
use crate::sql::Val;
use crate::{Store, StoreError};

/// What one VPC holds, as a scope sees it.
#[derive(Debug, Clone, Default)]
pub struct VpcContents {
    pub subnets: Vec<Subnet>,
    pub nics: Vec<Nic>,
    pub servers: Vec<Server>,
    pub vips: Vec<Vip>,
    /// The EIPs bound to its NICs and VIPs.
    pub eips: Vec<Eip>,
    pub groups: Vec<SecurityGroup>,
}

impl Store {
    /// VPC `key`'s subnets, NICs and their servers, VIPs, the EIPs bound
    /// to them and its security groups, in one read transaction of indexed
    /// queries (the VPC's subnets, their children, the EIP bindings of
    /// those): the cost follows the VPC's size, not the tenant's.
    pub async fn vpc_contents(
        &self,
        scope: &Scope,
        key: &str,
    ) -> Result<(Vpc, VpcContents), StoreError> {
        let mut tx = self.db.begin_read().await?;
        let vpc: Vpc = tx.find(scope, key, false).await?;
        // A tenant sees its own resources in a shared VPC (the default
        // one), not the others'.
        let (own, own_or_system, args): (&str, &str, Vec<Val>) = match scope {
            Scope::Tenant(t) => (
                " AND r.tenant = $3",
                " AND (r.tenant = $3 OR r.tenant = 'system')",
                vec![t.as_str().into()],
            ),
            _ => ("", "", vec![]),
        };
        let (subnet, nic, vip) = (Kind::Subnet.key(), Kind::Nic.key(), Kind::Vip.key());
        let with = |kind: Kind, extra: &[Val]| -> Vec<Val> {
            let mut a: Vec<Val> = vec![vpc.id.as_str().into(), kind.key().into()];
            a.extend(extra.iter().cloned());
            a
        };
        let subnets_of =
            format!("SELECT s.id FROM resources s WHERE s.kind = '{subnet}' AND s.parent = $1");
        let mut out = VpcContents::default();
        let docs = |rows: Vec<crate::sql::Row>| -> Result<Vec<String>, StoreError> {
            rows.iter().map(|r| r.text(0)).collect()
        };
        let subnet_sql = format!(
            "SELECT r.doc FROM resources r WHERE r.kind = $2 AND r.parent = $1{own_or_system} ORDER BY r.id"
        );
        for d in docs(tx.rows(&subnet_sql, &with(Kind::Subnet, &args)).await?)? {
            out.subnets.push(from_doc(&d)?);
        }
        for d in docs(
            tx.rows(
                &format!(
                    "SELECT r.doc FROM resources r WHERE r.kind = $2 AND r.parent = $1{own} ORDER BY r.id"
                ),
                &with(Kind::SecurityGroup, &args),
            )
            .await?,
        )? {
            out.groups.push(from_doc(&d)?);
        }
        let children = |kind: Kind| {
            (
                format!(
                    "SELECT r.doc FROM resources r WHERE r.kind = $2 AND r.parent IN ({subnets_of}){own} ORDER BY r.id"
                ),
                with(kind, &args),
            )
        };
        let (sql, a) = children(Kind::Nic);
        for d in docs(tx.rows(&sql, &a).await?)? {
            out.nics.push(from_doc(&d)?);
        }
        let (sql, a) = children(Kind::Vip);
        for d in docs(tx.rows(&sql, &a).await?)? {
            out.vips.push(from_doc(&d)?);
        }
        let servers = format!(
            "SELECT r.doc FROM resources r WHERE r.kind = $2 AND r.id IN \
             (SELECT n.attached FROM resources n WHERE n.kind = '{nic}' AND n.parent IN ({subnets_of})){own} ORDER BY r.id"
        );
        for d in docs(tx.rows(&servers, &with(Kind::Server, &args)).await?)? {
            out.servers.push(from_doc(&d)?);
        }
        let eips = format!(
            "SELECT r.doc FROM resources r JOIN eip_bindings b ON b.eip_id = r.id WHERE r.kind = $2 AND b.target_id IN \
             (SELECT t.id FROM resources t WHERE t.kind IN ('{nic}', '{vip}') AND t.parent IN ({subnets_of})){own} ORDER BY r.id"
        );
        for d in docs(tx.rows(&eips, &with(Kind::Eip, &args)).await?)? {
            out.eips.push(from_doc(&d)?);
        }
        tx.commit().await?;
        Ok((vpc, out))
    }

    /// Every `R` `scope` sees whose stored record contains `text` (case
    /// aside): the database filters, so only those are read. A record
    /// holds the resource's ID, name, addresses and the IDs it refers to;
    /// a caller matching on fewer fields filters the answer further.
    pub async fn search<R: Resource>(
        &self,
        scope: &Scope,
        text: &str,
    ) -> Result<Vec<R>, StoreError> {
        // The databases' LOWER folds ASCII letters only: the text's are
        // folded alike, others kept as written. (A NUL is no text.)
        let needle: String = text.to_ascii_lowercase().replace('\0', "");
        let escaped: String = needle
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("%{escaped}%");
        let mut args: Vec<Val> = vec![R::KIND.key().into(), pattern.as_str().into()];
        let mut sql = String::from(
            "SELECT doc FROM resources WHERE kind = $1 AND LOWER(doc) LIKE $2 ESCAPE '\\'",
        );
        match scope {
            Scope::Operator => {}
            Scope::Tenant(t) => {
                args.push(t.as_str().into());
                sql += &format!(" AND (tenant = $3 OR {SHARED})");
            }
            Scope::Agent(_) => {
                return Err(RuleError::Forbidden {
                    action: format!("search {}s", R::KIND.as_str()),
                }
                .into());
            }
        }
        sql += " ORDER BY id";
        let mut tx = self.db.begin_read().await?;
        let rows = tx.rows(&sql, &args).await?;
        tx.commit().await?;
        rows.iter().map(|r| from_doc(&r.text(0)?)).collect()
    }
}
