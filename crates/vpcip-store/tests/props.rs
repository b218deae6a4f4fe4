//! Property test through the real store: random sequences of allocate,
//! release, bind, unbind, attach and detach never hand out an address twice
//! and never leave a rule broken, whatever succeeds or is refused.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use vpcip_model::desired;
use vpcip_model::rules::{MAX_NICS_PER_VIP, MAX_VIPS_PER_NIC};
use vpcip_model::*;
use vpcip_store::{Scope, Store, StoreError};

#[derive(Debug, Clone)]
enum Op {
    CreateEip,
    ReleaseEip(usize),
    BindEipNic(usize, usize, bool),
    BindEipVip(usize, usize, bool),
    UnbindEip(usize),
    BindVip(usize, usize),
    UnbindVip(usize, usize),
    Attach(usize, usize),
    Detach(usize),
    CreateVip,
    DeleteVip(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0usize..64;
    prop_oneof![
        3 => Just(Op::CreateEip),
        1 => i.clone().prop_map(Op::ReleaseEip),
        3 => (i.clone(), i.clone(), any::<bool>()).prop_map(|(a, b, c)| Op::BindEipNic(a, b, c)),
        2 => (i.clone(), i.clone(), any::<bool>()).prop_map(|(a, b, c)| Op::BindEipVip(a, b, c)),
        1 => i.clone().prop_map(Op::UnbindEip),
        6 => (i.clone(), i.clone()).prop_map(|(a, b)| Op::BindVip(a, b)),
        2 => (i.clone(), i.clone()).prop_map(|(a, b)| Op::UnbindVip(a, b)),
        1 => (i.clone(), i.clone()).prop_map(|(a, b)| Op::Attach(a, b)),
        1 => i.clone().prop_map(Op::Detach),
        2 => Just(Op::CreateVip),
        1 => i.prop_map(Op::DeleteVip),
    ]
}

fn pick<T: Clone>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()].clone())
}

struct World {
    servers: Vec<String>,
    nics: Vec<String>,
    enis: Vec<String>,
}

async fn world(s: &Store) -> World {
    let op = Scope::Operator;
    let t = Scope::Tenant("t".into());
    s.create_zone(&op, &CreateZone { name: "z".into() })
        .await
        .unwrap();
    s.create_subnet(
        &op,
        &CreateSubnet {
            name: "seg".into(),
            kind: SubnetKind::Eip,
            cidr: Some("198.51.100.0/28".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.create_vpc(
        &t,
        &CreateVpc {
            name: "v".into(),
            cidr: "10.0.0.0/16".parse().unwrap(),
            secondary_cidrs: vec![],
            tenant: None,
            client_token: None,
        },
    )
    .await
    .unwrap();
    s.create_subnet(
        &t,
        &CreateSubnet {
            name: "sw".into(),
            vpc: Some("v".into()),
            zone: Some("z".into()),
            cidr: Some("10.0.0.0/26".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut w = World {
        servers: vec![],
        nics: vec![],
        enis: vec![],
    };
    for i in 0..4 {
        let vm = s
            .create_server(
                &t,
                &CreateServer {
                    name: format!("vm{i}"),
                    subnet: "sw".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        w.nics.push(vm.nic_ids[0].clone());
        w.servers.push(vm.id);
    }
    for i in 0..3 {
        let n = s
            .create_nic(
                &t,
                &CreateNic {
                    name: format!("eni{i}"),
                    subnet: "sw".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        w.nics.push(n.id.clone());
        w.enis.push(n.id);
    }
    w
}

async fn apply(s: &Store, w: &World, op: &Op) -> Result<(), StoreError> {
    let t = Scope::Tenant("t".into());
    let eips: Vec<String> = s
        .list::<Eip>(&t, None, None, Some(1000))
        .await?
        .items
        .into_iter()
        .map(|e| e.id)
        .collect();
    let vips: Vec<String> = s
        .list::<Vip>(&t, None, None, Some(1000))
        .await?
        .items
        .into_iter()
        .map(|v| v.id)
        .collect();
    let bind = |target, allow| BindEip {
        target,
        mode: EipMode::Nat,
        allow_reassociation: allow,
    };
    match op {
        Op::CreateEip => s
            .create_eip(
                &t,
                &CreateEip {
                    bandwidth_mbps: 1,
                    ..Default::default()
                },
            )
            .await
            .map(drop),
        Op::ReleaseEip(i) => match pick(&eips, *i) {
            Some(e) => s.release_eip(&t, &e).await,
            None => Ok(()),
        },
        Op::BindEipNic(e, n, allow) => match (pick(&eips, *e), pick(&w.nics, *n)) {
            (Some(e), Some(n)) => s
                .bind_eip(&t, &e, &bind(EipTarget::Nic(n), *allow))
                .await
                .map(drop),
            _ => Ok(()),
        },
        Op::BindEipVip(e, v, allow) => match (pick(&eips, *e), pick(&vips, *v)) {
            (Some(e), Some(v)) => s
                .bind_eip(&t, &e, &bind(EipTarget::Vip(v), *allow))
                .await
                .map(drop),
            _ => Ok(()),
        },
        Op::UnbindEip(i) => match pick(&eips, *i) {
            Some(e) => s.unbind_eip(&t, &e).await.map(drop),
            None => Ok(()),
        },
        Op::BindVip(v, n) => match (pick(&vips, *v), pick(&w.nics, *n)) {
            (Some(v), Some(n)) => s.bind_vip(&t, &v, &n).await.map(drop),
            _ => Ok(()),
        },
        Op::UnbindVip(v, n) => match (pick(&vips, *v), pick(&w.nics, *n)) {
            (Some(v), Some(n)) => s.unbind_vip(&t, &v, &n).await.map(drop),
            _ => Ok(()),
        },
        Op::Attach(e, sv) => s
            .attach_nic(
                &t,
                &pick(&w.enis, *e).unwrap(),
                &pick(&w.servers, *sv).unwrap(),
            )
            .await
            .map(drop),
        Op::Detach(e) => s
            .detach_nic(&t, &pick(&w.enis, *e).unwrap())
            .await
            .map(drop),
        Op::CreateVip => s
            .create_vip(
                &t,
                &CreateVip {
                    name: format!("vip{}", vips.len() + 100 * eips.len()),
                    subnet: "sw".into(),
                    ip: None,
                    client_token: None,
                },
            )
            .await
            .map(drop),
        Op::DeleteVip(i) => match pick(&vips, *i) {
            Some(v) => s.delete_vip(&t, &v).await,
            None => Ok(()),
        },
    }
}

/// Every invariant, read back from the store.
async fn check(s: &Store) {
    let op = Scope::Operator;
    let nics = s
        .list::<Nic>(&op, None, None, Some(1000))
        .await
        .unwrap()
        .items;
    let vips = s
        .list::<Vip>(&op, None, None, Some(1000))
        .await
        .unwrap()
        .items;
    let eips = s
        .list::<Eip>(&op, None, None, Some(1000))
        .await
        .unwrap()
        .items;
    let subnets = s
        .list::<Subnet>(&op, None, None, Some(1000))
        .await
        .unwrap()
        .items;
    let servers = s
        .list::<Server>(&op, None, None, Some(1000))
        .await
        .unwrap()
        .items;
    // Addresses: unique per subnet, and the subnet's count agrees.
    let mut per_subnet: BTreeMap<&str, BTreeSet<std::net::Ipv4Addr>> = BTreeMap::new();
    let holders = nics
        .iter()
        .map(|n| (n.subnet_id.as_str(), n.ip))
        .chain(vips.iter().map(|v| (v.subnet_id.as_str(), v.ip)))
        .chain(eips.iter().map(|e| (e.subnet_id.as_str(), e.ip)));
    for (sub, ip) in holders {
        assert!(
            per_subnet.entry(sub).or_default().insert(ip),
            "{ip} held twice in {sub}"
        );
    }
    for sub in &subnets {
        let held = per_subnet.get(sub.id.as_str()).map_or(0, BTreeSet::len) as u64;
        let reserved = u64::from(
            sub.gateway
                .is_some_and(|g| sub.range_start <= g && g <= sub.range_end),
        );
        assert_eq!(sub.used, held + reserved, "subnet {} count", sub.name);
    }
    // VIP bindings: limits, and both sides agree.
    let nic_by_id: BTreeMap<&str, &Nic> = nics.iter().map(|n| (n.id.as_str(), n)).collect();
    for v in &vips {
        assert!(v.nic_ids.len() <= MAX_NICS_PER_VIP);
        for n in &v.nic_ids {
            assert!(nic_by_id[n.as_str()].vip_ids.contains(&v.id));
            assert_eq!(nic_by_id[n.as_str()].subnet_id, v.subnet_id);
        }
    }
    for n in &nics {
        assert!(n.vip_ids.len() <= MAX_VIPS_PER_NIC);
        for v in &n.vip_ids {
            assert!(vips.iter().any(|x| x.id == *v && x.nic_ids.contains(&n.id)));
        }
    }
    // EIPs: one per target, one target each, consistent with the target.
    let mut targets = BTreeSet::new();
    for e in &eips {
        match &e.binding {
            EipBinding::Nic {
                nic_id,
                server_id,
                private_ip,
                ..
            } => {
                assert!(targets.insert(nic_id.clone()), "two EIPs on {nic_id}");
                let nic = nic_by_id[nic_id.as_str()];
                assert_eq!(*private_ip, nic.ip);
                assert_eq!(*server_id, nic.server_id);
            }
            EipBinding::Vip {
                vip_id, private_ip, ..
            } => {
                assert!(targets.insert(vip_id.clone()), "two EIPs on {vip_id}");
                let vip = vips.iter().find(|x| x.id == *vip_id).unwrap();
                assert_eq!(vip.eip_id.as_deref(), Some(e.id.as_str()));
                assert_eq!(*private_ip, vip.ip);
            }
            EipBinding::Unbound => {}
        }
    }
    for v in &vips {
        if let Some(e) = &v.eip_id {
            assert!(
                eips.iter()
                    .any(|x| x.id == *e && x.vip_id() == Some(v.id.as_str()))
            );
        }
    }
    // Attachments: a NIC is on a server iff the server lists it.
    for sv in &servers {
        for n in &sv.nic_ids {
            assert_eq!(
                nic_by_id[n.as_str()].server_id.as_deref(),
                Some(sv.id.as_str())
            );
        }
    }
    for n in &nics {
        if let Some(sv) = &n.server_id {
            assert!(
                servers
                    .iter()
                    .any(|x| x.id == *sv && x.nic_ids.contains(&n.id))
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_every_rule(ops in proptest::collection::vec(op(), 20..120)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let db = vpcip_store::testing::sqlite().await;
            let s = &db.store;
            let w = world(s).await;
            for op in &ops {
                match apply(s, &w, op).await {
                    Ok(()) | Err(StoreError::Rule(_)) => {}
                    Err(e) => panic!("{op:?}: not a rule refusal: {e:?}"),
                }
                check(s).await;
                let broken = vpcip_store::testing::invariants(s).await.unwrap();
                assert!(broken.is_empty(), "after {op:?}: {broken:?}");
            }
        });
    }
}

/// What the watch adds to the operations: servers placed on and removed
/// from hosts, NICs moved between groups, rules naming a remote group.
#[derive(Debug, Clone)]
enum WatchOp {
    Base(Op),
    Groups(usize, bool),
    Rule(u16),
    Server,
    DeleteServer(usize),
    /// An EIP's bandwidth: limited (an HTB class on its router) or not.
    Bandwidth(usize, bool),
    /// An EIP from the second segment (its addresses' classes those of
    /// the first's).
    CreateEip2,
}

fn watch_op() -> impl Strategy<Value = WatchOp> {
    prop_oneof![
        8 => op().prop_map(WatchOp::Base),
        2 => (0usize..64, any::<bool>()).prop_map(|(n, web)| WatchOp::Groups(n, web)),
        1 => (1u16..1000).prop_map(WatchOp::Rule),
        1 => Just(WatchOp::Server),
        1 => (0usize..64).prop_map(WatchOp::DeleteServer),
        2 => (0usize..64, any::<bool>()).prop_map(|(i, l)| WatchOp::Bandwidth(i, l)),
        1 => Just(WatchOp::CreateEip2),
    ]
}

/// Agents (a gateway, two hosts) before the world, so servers are placed.
async fn agents(s: &Store) -> Vec<String> {
    let op = Scope::Operator;
    s.create_host_network(
        &op,
        &CreateHostNetwork {
            name: "underlay".into(),
            cidr: "192.168.201.0/24".parse().unwrap(),
        },
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for (name, role, ip) in [
        ("gw1", desired::AgentRole::Gateway, "192.168.201.21"),
        ("h1", desired::AgentRole::Host, "192.168.201.11"),
        ("h2", desired::AgentRole::Host, "192.168.201.12"),
    ] {
        let a = s
            .register_agent(
                &op,
                &desired::RegisterAgent {
                    name: name.into(),
                    role,
                    underlay_ip: ip.parse().unwrap(),
                },
            )
            .await
            .unwrap();
        ids.push(a.id);
    }
    ids
}

/// A group "web" whose rule lets the default group's members in.
async fn web_group(s: &Store) -> String {
    let t = Scope::Tenant("t".into());
    let default = s
        .list::<SecurityGroup>(&t, None, None, Some(1000))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .unwrap();
    s.create_security_group(
        &t,
        &CreateSecurityGroup {
            name: "web".into(),
            vpc: "v".into(),
            kind: SgKind::Advanced,
            rules: vec![format!("ingress:all:{}", default.id).parse().unwrap()],
            managed: false,
            client_token: None,
        },
    )
    .await
    .unwrap()
    .id
}

async fn apply_watch(s: &Store, w: &World, web: &str, op: &WatchOp) -> Result<(), StoreError> {
    let t = Scope::Tenant("t".into());
    match op {
        WatchOp::Base(op) => apply(s, w, op).await,
        WatchOp::Groups(n, to_web) => {
            let default = s
                .list::<SecurityGroup>(&t, None, None, Some(1000))
                .await?
                .items
                .into_iter()
                .find(|g| g.id != web)
                .unwrap();
            let groups = if *to_web {
                vec![web.to_string(), default.id]
            } else {
                vec![default.id]
            };
            s.update_nic(
                &t,
                &pick(&w.nics, *n).unwrap(),
                &UpdateNic {
                    security_groups: Some(groups),
                    ..Default::default()
                },
            )
            .await
            .map(drop)
        }
        WatchOp::Rule(port) => s
            .add_sg_rules(
                &t,
                web,
                &[format!("ingress:tcp:{port}:10.0.0.0/8").parse().unwrap()],
            )
            .await
            .map(drop),
        WatchOp::Server => s
            .create_server(
                &t,
                &CreateServer {
                    name: format!("extra{}", rand_suffix()),
                    subnet: "sw".into(),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
        WatchOp::CreateEip2 => s
            .create_eip(
                &t,
                &CreateEip {
                    bandwidth_mbps: 1,
                    subnet: Some("seg2".into()),
                    ..Default::default()
                },
            )
            .await
            .map(drop),
        WatchOp::Bandwidth(i, limited) => {
            let eips = s.list::<Eip>(&t, None, None, Some(1000)).await?.items;
            match pick(&eips, *i) {
                Some(e) => s
                    .update_eip(
                        &t,
                        &e.id,
                        &UpdateEip {
                            bandwidth_mbps: Some(if *limited {
                                5
                            } else {
                                vpcip_model::rules::MAX_BANDWIDTH_MBPS
                            }),
                            ..Default::default()
                        },
                    )
                    .await
                    .map(drop),
                None => Ok(()),
            }
        }
        WatchOp::DeleteServer(i) => {
            let servers = s.list::<Server>(&t, None, None, Some(1000)).await?.items;
            match pick(&servers, *i) {
                Some(sv) if sv.name.starts_with("extra") => s.delete_server(&t, &sv.id).await,
                _ => Ok(()),
            }
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// One agent's watchers: one follows every batch, one resumes every few
/// operations (several revisions at once), one asks for a snapshot.
#[derive(Default)]
struct Watchers {
    each: (desired::Entries, Option<i64>),
    sometimes: (desired::Entries, Option<i64>),
}

async fn follow(s: &Store, agent: &str, w: &mut (desired::Entries, Option<i64>)) {
    let watch = s
        .watch_current(std::time::Duration::from_secs(20))
        .await
        .unwrap();
    let batch = watch
        .next(agent, w.1, std::time::Duration::ZERO)
        .await
        .unwrap();
    w.0.apply(&batch);
    w.1 = Some(batch.revision);
}

/// Random operations; after each, every agent's state from the watch
/// (followed batch by batch, resumed now and then, and a fresh snapshot)
/// equals the one computed from the store.
async fn watch_matches_snapshots(s: &Store, ops: &[WatchOp]) {
    let ids = agents(s).await;
    let w = world(s).await;
    let web = web_group(s).await;
    // A second segment whose addresses share their low 16 bits (their
    // own HTB classes) with the first's: once both hold bound, limited
    // EIPs of one VPC, classes are shared and one EIP's bind can move
    // another's class.
    s.create_subnet(
        &Scope::Operator,
        &CreateSubnet {
            name: "seg2".into(),
            kind: SubnetKind::Eip,
            cidr: Some("172.16.100.0/28".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // One bound EIP to start from: NAT entries from the first operation.
    apply(s, &w, &Op::CreateEip).await.unwrap();
    apply(s, &w, &Op::BindEipNic(0, 0, false)).await.unwrap();
    let mut watchers: BTreeMap<String, Watchers> = BTreeMap::new();
    // The kinds of entry the states had, from the start (a sequence may
    // unbind the one EIP first and bind none).
    let mut seen = BTreeSet::new();
    for id in &ids {
        let start = desired::Entries::of(&s.desired(&Scope::Operator, id).await.unwrap());
        seen.extend(
            start
                .map
                .keys()
                .map(|k| k.split('/').next().unwrap_or("").to_string()),
        );
    }
    for (i, op) in ops.iter().enumerate() {
        match apply_watch(s, &w, &web, op).await {
            Ok(()) | Err(StoreError::Rule(_)) => {}
            Err(e) => panic!("{op:?}: not a rule refusal: {e:?}"),
        }
        for id in &ids {
            let fresh = desired::Entries::of(&s.desired(&Scope::Operator, id).await.unwrap());
            seen.extend(
                fresh
                    .map
                    .keys()
                    .map(|k| k.split('/').next().unwrap_or("").to_string()),
            );
            let ws = watchers.entry(id.clone()).or_default();
            follow(s, id, &mut ws.each).await;
            assert_eq!(
                ws.each.0, fresh,
                "after {op:?} (#{i}): agent {id} followed batch by batch"
            );
            if i % 5 == 4 {
                follow(s, id, &mut ws.sometimes).await;
                assert_eq!(
                    ws.sometimes.0, fresh,
                    "after {op:?} (#{i}): agent {id} resumed"
                );
            }
            let mut snapshot = (desired::Entries::default(), None);
            follow(s, id, &mut snapshot).await;
            assert_eq!(
                snapshot.0, fresh,
                "after {op:?} (#{i}): agent {id}'s snapshot"
            );
        }
    }
    // Every kind of entry took part.
    for kind in ["gateway", "router", "nat", "domain", "port", "group"] {
        assert!(seen.contains(kind), "no {kind} entry in {seen:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_watch_always_equals_a_fresh_snapshot(ops in proptest::collection::vec(watch_op(), 20..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let db = vpcip_store::testing::sqlite().await;
            watch_matches_snapshots(&db.store, &ops).await;
        });
    }
}

#[cfg(feature = "pg-tests")]
proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn the_watch_always_equals_a_fresh_snapshot_on_postgresql(ops in proptest::collection::vec(watch_op(), 20..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let db = vpcip_store::testing::postgres().await;
            watch_matches_snapshots(&db.store, &ops).await;
        });
    }
}
