//! `vpcip <resource> <verb>`: each verb is one API call (or a page walk),
//! printed as a table or as JSON. One file per family: `infra.rs` (zones,
//! host networks, gateways, tokens), `network.rs` (VPCs, subnets, security
//! groups), `compute.rs` (servers, NICs), `vip.rs`, `eip.rs`, `status.rs`.

use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use vpcip_client::Client;
use vpcip_model::paths::{self, Collection};
use vpcip_model::*;

use crate::cli::*;
use crate::table::{GatewayHealth, Tabular, print_list, print_one};
use vpcip_model::desired::{Agent, AgentRole, EipCounters, VipHolding};

struct Ctx {
    client: Client,
    output: Output,
}

/// The collections whose IDs a table names, by ID prefix.
const NAMED: [(&str, &str); 8] = [
    ("zone", paths::ZONES),
    ("vpc", paths::VPCS),
    ("subnet", paths::SUBNETS),
    ("sg", paths::SECURITY_GROUPS),
    ("vm", paths::SERVERS),
    ("eni", paths::NICS),
    ("vip", paths::VIPS),
    ("eip", paths::EIPS),
];

/// The ID prefix of `word` when it is a resource ID (`subnet-c2yvwvpvc8`).
fn id_prefix(word: &str) -> Option<&'static str> {
    let (prefix, rest) = word.rsplit_once('-')?;
    let known = NAMED.iter().find(|(p, _)| *p == prefix)?.0;
    (rest.len() == 10 && rest.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(known)
}

impl Ctx {
    async fn list<T: Collection + DeserializeOwned + Serialize + Tabular>(
        &self,
        parent: Option<&str>,
    ) -> anyhow::Result<()> {
        let items: Vec<T> = self.client.list(parent).await?;
        self.print_named(&items).await
    }

    /// What a guest needs (`nic|vip guest-config`): the text to run or
    /// write as it is, or with `-o json` (and `--field`) a record: what it is
    /// for, the NIC and interface, the format, and the text.
    fn print_config(
        &self,
        target: &str,
        nic: &str,
        interface: &str,
        format: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        if self.output == Output::Table && crate::table::FIELD.get().is_none() {
            print!("{text}");
            return Ok(());
        }
        #[derive(Serialize)]
        struct GuestConfig<'a> {
            target: &'a str,
            nic: &'a str,
            interface: &'a str,
            format: &'a str,
            config: &'a str,
        }
        print_one(
            &GuestConfig {
                target,
                nic,
                interface,
                format,
                config: text,
            },
            self.output,
        )
    }

    /// A list as a table whose cells name what they refer to (a subnet by
    /// its name, an EIP by its address) rather than by ID; the ID column
    /// stays. JSON and `--field` print the records as they are.
    async fn print_named<T: Serialize + Tabular>(&self, items: &[T]) -> anyhow::Result<()> {
        if self.output != Output::Table || crate::table::FIELD.get().is_some() {
            return print_list(items, self.output);
        }
        let mut rows: Vec<Vec<String>> = items.iter().map(Tabular::row).collect();
        let words = |cell: &String| {
            cell.split([' ', ','])
                .filter_map(id_prefix)
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let wanted: std::collections::BTreeSet<String> = rows
            .iter()
            .flat_map(|r| r.iter().skip(1).flat_map(words))
            .collect();
        let mut names: std::collections::HashMap<String, String> = Default::default();
        for (prefix, collection) in NAMED {
            if !wanted.contains(prefix) {
                continue;
            }
            // What cannot be read (another tenant's, say) keeps its ID.
            let Ok(all) = self
                .client
                .list_at::<serde_json::Value>(collection, None)
                .await
            else {
                continue;
            };
            for v in all {
                let id = v["id"].as_str().unwrap_or_default().to_string();
                let name = match (prefix, v["name"].as_str()) {
                    ("eip", _) => v["ip"].as_str(),
                    (_, Some(n)) if !n.is_empty() => Some(n),
                    _ => None,
                };
                if let Some(n) = name {
                    names.insert(id, n.to_string());
                }
            }
        }
        for row in &mut rows {
            for cell in row.iter_mut().skip(1) {
                let named: String = cell
                    .split_inclusive([' ', ','])
                    .map(|w| {
                        let bare = w.trim_end_matches([' ', ',']);
                        match names.get(bare) {
                            Some(n) => format!("{n}{}", &w[bare.len()..]),
                            None => w.to_string(),
                        }
                    })
                    .collect();
                *cell = named;
            }
        }
        let (head, rows) = crate::table::select_columns(T::HEADER, rows)?;
        let head: Vec<&str> = head.iter().map(String::as_str).collect();
        print!("{}", crate::table::render_table(&head, &rows));
        Ok(())
    }

    async fn show<T: Collection + DeserializeOwned + Serialize>(
        &self,
        id: &str,
    ) -> anyhow::Result<()> {
        let item: T = self.client.show(id).await?;
        print_one(&item, self.output)
    }

    async fn create<B: Serialize, T: Collection + DeserializeOwned + Serialize>(
        &self,
        body: &B,
    ) -> anyhow::Result<T> {
        let item: T = self.client.create::<T, _, _>(body).await?;
        print_one(&item, self.output)?;
        Ok(item)
    }

    async fn update<B: Serialize, T: Collection + DeserializeOwned + Serialize>(
        &self,
        id: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let item: T = self.client.update(id, body).await?;
        print_one(&item, self.output)?;
        Ok(item)
    }

    /// Deletes the item at `template` (a `paths` constant) with `id`.
    async fn delete(&self, template: &str, id: &str) -> anyhow::Result<()> {
        self.client.delete(&paths::at(template, &[id])).await?;
        if self.output == Output::Table {
            println!("deleted {id}");
        }
        Ok(())
    }

    async fn action<B: Serialize, T: DeserializeOwned + Serialize>(
        &self,
        template: &str,
        id: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let item: T = self.client.action(template, id, body).await?;
        print_one(&item, self.output)?;
        Ok(item)
    }

    /// Warnings go to stderr so that `-o json` output stays clean.
    fn warn(&self, warnings: &[Warning]) {
        for w in warnings {
            eprintln!("warning: {} ({})", w.message, w.code);
        }
    }
}

mod compute;
mod eip;
mod infra;
mod network;
mod status;
mod vip;

use vip::guest_names;

pub async fn run(cmd: Resource, global: &Global) -> anyhow::Result<()> {
    if let Some(f) = &global.field {
        let _ = crate::table::FIELD.set(f.clone());
    }
    let _ = crate::table::COLUMNS.set(global.columns.clone());
    let ctx = Ctx {
        client: Client::new(&global.url, global.token.as_deref()),
        output: global.output,
    };
    let ctx = &ctx;
    match cmd {
        Resource::Zone(c) => infra::zone(ctx, c).await,
        Resource::HostNetwork(c) => infra::host_network(ctx, c).await,
        Resource::Gateway(c) => infra::gateway(ctx, c).await,
        Resource::Host(HostCmd::List) => {
            let agents: Vec<Agent> = ctx.client.get(paths::AGENTS).await?;
            let hosts: Vec<Agent> = agents
                .into_iter()
                .filter(|a| a.role == AgentRole::Host)
                .collect();
            print_list(&hosts, ctx.output)
        }
        Resource::Host(HostCmd::Show(k)) => {
            let agents: Vec<Agent> = ctx.client.get(paths::AGENTS).await?;
            let host = agents
                .into_iter()
                .find(|a| a.role == AgentRole::Host && (a.id == k.id || a.name == k.id))
                .with_context(|| format!("no host {} that you can see (vpcip host list)", k.id))?;
            print_one(&host, ctx.output)
        }
        Resource::Route(RouteCmd::List) => {
            let routes: Vec<PhysicalRoute> = ctx.client.get(paths::PHYSICAL_ROUTES).await?;
            print_list(&routes, ctx.output)
        }
        Resource::Vpc(c) => network::vpc(ctx, c).await,
        Resource::Subnet(c) => network::subnet(ctx, c).await,
        Resource::SecurityGroup(c) => network::security_group(ctx, c).await,
        Resource::Vm(c) => compute::vm(ctx, c).await,
        Resource::Nic(c) => compute::nic(ctx, c).await,
        Resource::Vip(c) => vip::vip(ctx, c).await,
        Resource::Eip(c) => eip::eip(ctx, c).await,
        Resource::Status => status::status(ctx).await,
        Resource::Token(c) => infra::token(ctx, c).await,
    }
}
