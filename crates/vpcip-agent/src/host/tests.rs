//! The host reconciler against a fake kernel: no root, no namespaces.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use vpcip_dataplane::host::{HostChange, HostObserved};
use vpcip_dataplane::links::{LinkChange, LinkState};
use vpcip_model::desired::{HostPort, HostState, L2Domain};

use super::HostReconciler;
use crate::kernel::{HostKernel, KernelError};

const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

/// A kernel that is a value: observing returns it, applying changes it as
/// the real one would (`simulate`), and every change is logged. It can be
/// told to refuse to plug one link.
#[derive(Default)]
struct FakeHost {
    state: HostObserved,
    applied: Vec<HostChange>,
    refuse_master_of: Option<String>,
}

impl HostKernel for FakeHost {
    fn observe(&mut self, _underlay: Ipv4Addr) -> Result<HostObserved, KernelError> {
        Ok(self.state.clone())
    }

    fn apply(&mut self, changes: &[HostChange]) -> Result<(), KernelError> {
        for c in changes {
            if let HostChange::Link(l @ LinkChange::SetMaster { .. }) = c
                && self.refuse_master_of.as_deref() == Some(l.link())
            {
                return Err(KernelError::NoLink {
                    op: "set master of",
                    object: l.link().to_string(),
                });
            }
            c.simulate(&mut self.state);
            self.applied.push(c.clone());
        }
        Ok(())
    }
}

fn link(kind: Option<&str>) -> LinkState {
    LinkState {
        kind: kind.map(str::to_string),
        mtu: Some(1500),
        ipv6: true,
        ..Default::default()
    }
}

fn host_with(links: &[(&str, Option<&str>)]) -> FakeHost {
    let mut state = HostObserved {
        underlay_mtu: 1500,
        ..Default::default()
    };
    for (name, kind) in links {
        state.links.insert(name.to_string(), link(*kind));
    }
    FakeHost {
        state,
        ..Default::default()
    }
}

fn desired() -> HostState {
    HostState {
        domains: vec![L2Domain {
            subnet_id: "subnet-a".into(),
            vni: 7,
            vteps: vec![Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 12)],
        }],
        ports: vec![HostPort {
            nic_id: "nic-abc".into(),
            ifname: "tabc".into(),
            vni: 7,
            mac: "fa:16:3e:00:00:01".into(),
            ips: vec![Ipv4Addr::new(10, 0, 1, 2)],
            source_dest_check: true,
            security_groups: vec!["sg-web".into()],
            vrrp_peers: vec![],
            zone: 1,
            dhcp: None,
        }],
        groups: vec![vpcip_model::filter::GroupFilter {
            id: "sg-web".into(),
            ingress: vec![vpcip_model::filter::FilterElement::new(
                (6, 6),
                (80, 80),
                "0.0.0.0/0".parse().unwrap(),
            )],
            egress: vec![],
        }],
    }
}

#[test]
fn a_new_host_is_built_and_an_idle_pass_changes_nothing() {
    let mut r =
        HostReconciler::with_kernel(host_with(&[("tabc", Some("tun")), ("eth0", None)]), ME);
    let eth0 = r.kernel().state.links["eth0"].clone();
    let first = r.reconcile(&desired()).unwrap();
    assert!(first.changed > 0 && !first.pending);
    let k = r.kernel();
    assert_eq!(k.state.links["tabc"].master.as_deref(), Some("br7"));
    assert_eq!(k.state.links["tabc"].mtu, Some(1450), "the overlay's MTU");
    assert!(k.state.links["vx7"].up && k.state.links["br7"].up);
    assert_eq!(k.state.links["vx7"].flood.len(), 2);
    assert!(
        k.state
            .port_guards
            .as_ref()
            .unwrap()
            .guarded
            .contains("tabc")
    );
    assert_eq!(k.state.links["eth0"], eth0, "not vpcip's: untouched");
    let before = k.applied.len();
    let idle = r.reconcile(&desired()).unwrap();
    assert_eq!(idle.changed, 0);
    assert_eq!(r.kernel().applied.len(), before, "nothing applied");
}

#[test]
fn drift_is_repaired_and_foreign_links_survive() {
    let mut r = HostReconciler::with_kernel(
        host_with(&[
            ("tabc", Some("tun")),
            ("br-lan", Some("bridge")),
            ("vxlan0", Some("vxlan")),
        ]),
        ME,
    );
    r.reconcile(&desired()).unwrap();
    // Someone on the host unplugs the port, turns IPv6 back on, adds a
    // VTEP and takes the port's MAC out of the guards; a bridge of a
    // domain that left lingers.
    let k = &mut r.kernel;
    k.state.links.get_mut("tabc").unwrap().master = None;
    let vx = k.state.links.get_mut("vx7").unwrap();
    vx.ipv6 = true;
    vx.flood.insert(Ipv4Addr::new(198, 51, 100, 66));
    k.state.port_guards.as_mut().unwrap().macs.clear();
    LinkChange::AddBridge { name: "br9".into() }.simulate(&mut k.state.links);
    let foreign: BTreeMap<String, LinkState> = ["br-lan", "vxlan0"]
        .iter()
        .map(|n| (n.to_string(), k.state.links[*n].clone()))
        .collect();
    let s = r.reconcile(&desired()).unwrap();
    assert!(s.changed >= 5, "{s:?}");
    let k = r.kernel();
    assert_eq!(k.state.links["tabc"].master.as_deref(), Some("br7"));
    assert!(!k.state.links["vx7"].ipv6);
    assert_eq!(k.state.links["vx7"].flood.len(), 2);
    assert!(!k.state.links.contains_key("br9"));
    assert_eq!(k.state.port_guards.as_ref().unwrap().macs.len(), 1);
    for (n, l) in &foreign {
        assert_eq!(&k.state.links[n], l, "{n} is not vpcip's");
    }
    assert_eq!(r.reconcile(&desired()).unwrap().changed, 0);
}

#[test]
fn a_port_not_made_yet_is_awaited_and_guarded_first() {
    let mut r = HostReconciler::with_kernel(host_with(&[]), ME);
    let s = r.reconcile(&desired()).unwrap();
    assert!(s.pending, "the hypervisor has not made tabc");
    assert!(
        r.kernel()
            .state
            .port_guards
            .as_ref()
            .unwrap()
            .ports
            .contains("tabc")
    );
    // The hypervisor makes it: the next pass plugs it.
    r.kernel
        .state
        .links
        .insert("tabc".into(), link(Some("tun")));
    let s = r.reconcile(&desired()).unwrap();
    assert!(!s.pending);
    assert_eq!(
        r.kernel().state.links["tabc"].master.as_deref(),
        Some("br7")
    );
}

#[test]
fn a_refused_change_is_a_typed_error_and_the_next_pass_finishes() {
    let mut r = HostReconciler::with_kernel(host_with(&[("tabc", Some("tun"))]), ME);
    r.kernel.refuse_master_of = Some("tabc".into());
    let e = r.reconcile(&desired()).unwrap_err();
    assert_eq!(e.to_string(), "set master of tabc: no such link");
    // The guards went in before the refusal: the port was never unguarded.
    assert!(r.kernel().state.port_guards.is_some());
    r.kernel.refuse_master_of = None;
    r.reconcile(&desired()).unwrap();
    assert_eq!(
        r.kernel().state.links["tabc"].master.as_deref(),
        Some("br7")
    );
    assert_eq!(r.reconcile(&desired()).unwrap().changed, 0);
}
