//! `vpcip <resource> <verb>`: each verb is one API call (or a page walk),
//! printed as a table or as JSON. One file per family: `infra.rs` (zones,
//! host networks, gateways, tokens), `network.rs` (VPCs, subnets, security
//! groups), `compute.rs` (servers, NICs), `vip.rs`, `eip.rs`, `status.rs`.

use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use vpcip_client::Client;
use vpcip_model::*;

use crate::cli::*;
use crate::table::{GatewayHealth, Tabular, print_list, print_one};
use vpcip_model::desired::{Agent, AgentRole, EipCounters, VipHolding};

struct Ctx {
    client: Client,
    output: Output,
}

impl Ctx {
    async fn list<T: DeserializeOwned + Serialize + Tabular>(
        &self,
        collection: &str,
        parent: Option<&str>,
    ) -> anyhow::Result<()> {
        let items: Vec<T> = self.client.list_all(collection, parent).await?;
        print_list(&items, self.output)
    }

    async fn show<T: DeserializeOwned + Serialize>(
        &self,
        collection: &str,
        id: &str,
    ) -> anyhow::Result<()> {
        let item: T = self.client.show(collection, id).await?;
        print_one(&item, self.output)
    }

    async fn create<B: Serialize, T: DeserializeOwned + Serialize>(
        &self,
        collection: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let item: T = self.client.post(&format!("/v1/{collection}"), body).await?;
        print_one(&item, self.output)?;
        Ok(item)
    }

    async fn update<B: Serialize, T: DeserializeOwned + Serialize>(
        &self,
        collection: &str,
        id: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let item: T = self
            .client
            .patch(&format!("/v1/{collection}/{id}"), body)
            .await?;
        print_one(&item, self.output)?;
        Ok(item)
    }

    async fn delete(&self, collection: &str, id: &str) -> anyhow::Result<()> {
        self.client.remove(collection, id).await?;
        if self.output == Output::Table {
            println!("deleted {id}");
        }
        Ok(())
    }

    async fn action<B: Serialize, T: DeserializeOwned + Serialize>(
        &self,
        collection: &str,
        id: &str,
        action: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let item: T = self.client.action(collection, id, action, body).await?;
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
            let agents: Vec<Agent> = ctx.client.get("/v1/agents").await?;
            let hosts: Vec<Agent> = agents
                .into_iter()
                .filter(|a| a.role == AgentRole::Host)
                .collect();
            print_list(&hosts, ctx.output)
        }
        Resource::Route(RouteCmd::List) => {
            let routes: Vec<PhysicalRoute> = ctx.client.get("/v1/physical-routes").await?;
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
