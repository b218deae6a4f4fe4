//! The gateway reconciler against a fake kernel: no root, no namespaces.

use std::net::Ipv4Addr;

use vpcip_dataplane::gateway::{GatewayChange, GatewayObserved, Ns};
use vpcip_dataplane::links::LinkState;
use vpcip_model::desired::{
    GatewayState, L2Domain, NatEntry, RouterSubnet, VpcRouter, router_ifname,
};

use super::GatewayReconciler;
use crate::kernel::{GatewayKernel, KernelError};

const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// A kernel that is a value: observing returns it, applying changes it as
/// the real one would (`simulate`). It can be told to refuse every change
/// inside one router.
#[derive(Default)]
struct FakeGateway {
    state: GatewayObserved,
    applied: usize,
    refuse_router: Option<String>,
    passes: usize,
}

impl GatewayKernel for FakeGateway {
    fn observe(&mut self, _underlay: Ipv4Addr) -> Result<GatewayObserved, KernelError> {
        Ok(self.state.clone())
    }

    fn apply(&mut self, changes: &[GatewayChange]) -> Result<(), KernelError> {
        for c in changes {
            if let (
                GatewayChange::Link {
                    ns: Ns::Router(v),
                    change,
                },
                Some(r),
            ) = (c, &self.refuse_router)
                && v == r
            {
                return Err(KernelError::NoLink {
                    op: "refused in the test",
                    object: change.link().to_string(),
                });
            }
            c.simulate(&mut self.state);
            self.applied += 1;
        }
        Ok(())
    }

    fn pass_done(&mut self) {
        self.passes += 1;
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn router(vpc: &str, index: u32, eip: &str, private: &str) -> VpcRouter {
    VpcRouter {
        slot: 0,
        vpc_id: vpc.into(),
        index,
        subnets: vec![RouterSubnet {
            l2: L2Domain {
                subnet_id: format!("subnet-{index}"),
                vni: index + 10,
                vteps: vec![ip("192.0.2.11")],
            },
            cidr: "10.0.1.0/24".parse().unwrap(),
            gateway: Some(ip("10.0.1.1")),
        }],
        nat: vec![NatEntry {
            eip: ip(eip),
            private_ip: ip(private),
            eip_id: format!("eip-{index}"),
            shaping: None,
            algs: vec![],
        }],
        visible: vec![],
        vips: vec![],
    }
}

fn desired() -> GatewayState {
    GatewayState {
        routers: vec![
            router("vpc-a", 1, "203.0.113.5", "10.0.1.5"),
            router("vpc-b", 2, "203.0.113.6", "10.0.1.5"),
        ],
        eip_segments: vec!["203.0.113.0/24".parse().unwrap()],
        infrastructure: vec!["192.0.2.0/24".parse().unwrap()],
        infra_allow: vec![],
        snat_ip: Some(ip("203.0.113.254")),
        cluster: Default::default(),
    }
}

fn node() -> FakeGateway {
    let mut f = FakeGateway::default();
    f.state.underlay_mtu = 1500;
    f.state.node.links.insert(
        "eth0".into(),
        LinkState {
            kind: None,
            up: true,
            mtu: Some(1500),
            addrs: ["192.0.2.2/24".parse().unwrap()].into(),
            ..Default::default()
        },
    );
    f
}

#[test]
fn a_new_gateway_is_built_and_an_idle_pass_changes_nothing() {
    let mut r = GatewayReconciler::with_kernel(node(), ME);
    let eth0 = r.kernel().state.node.links["eth0"].clone();
    let s = r.reconcile(&desired()).unwrap();
    assert!(s.changed > 20, "{s:?}");
    let k = r.kernel();
    let a = &k.state.routers["vpc-a"];
    assert_eq!(a.maps.dnat[&ip("203.0.113.5")], ip("10.0.1.5"));
    assert!(a.ns.links["up0"].up && a.ns.links["vx11"].up);
    assert_eq!(k.state.node_maps.steer[&ip("203.0.113.6")], 2);
    assert_eq!(k.state.node.links["eth0"], eth0, "not vpcip's");
    assert!(k.state.guard.is_some());
    let before = k.applied;
    let idle = r.reconcile(&desired()).unwrap();
    assert_eq!(idle.changed, 0);
    assert_eq!(r.kernel().applied, before, "nothing applied");
    assert_eq!(r.kernel().passes, 2);
}

#[test]
fn drift_is_repaired_and_stale_routers_go() {
    let mut r = GatewayReconciler::with_kernel(node(), ME);
    r.reconcile(&desired()).unwrap();
    // Someone brings a router's uplink down, removes a NAT entry and the
    // node's steering, adds a VTEP to a subnet, and a router of a deleted
    // VPC lingers.
    let k = &mut r.kernel;
    let a = k.state.routers.get_mut("vpc-a").unwrap();
    a.ns.links.get_mut("up0").unwrap().up = false;
    a.maps.dnat.clear();
    a.ns.links
        .get_mut("vx11")
        .unwrap()
        .flood
        .insert(ip("198.51.100.66"));
    k.state.node_maps.steer.clear();
    GatewayChange::MakeRouter {
        vpc: "vpc-gone".into(),
    }
    .simulate(&mut k.state);
    r.reconcile(&desired()).unwrap();
    let k = r.kernel();
    let a = &k.state.routers["vpc-a"];
    assert!(a.ns.links["up0"].up);
    assert_eq!(a.maps.dnat.len(), 1);
    assert_eq!(a.ns.links["vx11"].flood, [ip("192.0.2.11")].into());
    assert_eq!(k.state.node_maps.steer.len(), 2);
    assert!(!k.state.routers.contains_key("vpc-gone"));
    assert_eq!(r.reconcile(&desired()).unwrap().changed, 0);
}

#[test]
fn a_failing_router_holds_back_no_other() {
    let mut k = node();
    k.refuse_router = Some("vpc-a".into());
    let mut r = GatewayReconciler::with_kernel(k, ME);
    let e = r.reconcile(&desired()).unwrap_err();
    assert!(e.starts_with("VPC vpc-a: refused in the test"), "{e}");
    let k = r.kernel();
    // VPC b is whole, its route on the node included; VPC a's route waits.
    assert!(k.state.routers["vpc-b"].maps.dnat.len() == 1);
    let via = |vpc: &str| {
        k.state
            .node
            .routes
            .iter()
            .any(|r| r.dev.as_deref() == Some(router_ifname(vpc).as_str()))
    };
    assert!(via("vpc-b") && !via("vpc-a"));
    r.kernel.refuse_router = None;
    r.reconcile(&desired()).unwrap();
    assert_eq!(r.reconcile(&desired()).unwrap().changed, 0);
    let k = r.kernel();
    assert!(
        k.state
            .node
            .routes
            .iter()
            .any(|r| r.dev.as_deref() == Some(router_ifname("vpc-a").as_str()))
    );
}
