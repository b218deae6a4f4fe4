use super::*;

fn nic() -> GuestNic<'static> {
    GuestNic {
        ifname: "eth0",
        connection: "System eth0",
        ip: "192.168.0.11".parse().unwrap(),
        subnet: "192.168.0.0/24".parse().unwrap(),
        gateway: Some("192.168.0.1".parse().unwrap()),
        device: 0,
    }
}

/// The vendor manuals' secondary ENI: eth1 in another subnet.
fn eni() -> GuestNic<'static> {
    GuestNic {
        ifname: "eth1",
        connection: "System eth1",
        ip: "192.168.1.5".parse().unwrap(),
        subnet: "192.168.1.0/24".parse().unwrap(),
        gateway: Some("192.168.1.1".parse().unwrap()),
        device: 1,
    }
}

#[test]
fn a_secondary_eni_gets_source_routing_on_every_os() {
    assert_eq!(
        nic_config(GuestOs::Centos, &eni(), false),
        "nmcli connection add type ethernet con-name \"System eth1\" ifname eth1 ipv4.method manual ipv4.addresses 192.168.1.5/24 \
         ipv4.never-default yes ipv4.routes \"192.168.1.0/24 table=1001, 0.0.0.0/0 192.168.1.1 table=1001\" \
         ipv4.routing-rules \"priority 1001 from 192.168.1.0/24 table 1001\"\n\
         nmcli connection up \"System eth1\"\n"
    );
    assert_eq!(
        nic_config(GuestOs::Centos, &eni(), true),
        "nmcli connection delete \"System eth1\"\n"
    );
    assert_eq!(
        nic_config(GuestOs::Ubuntu, &eni(), false),
        "# /etc/netplan/51-eth1.yaml\n\
         network:\n\
         \x20   version: 2\n\
         \x20   ethernets:\n\
         \x20       eth1:\n\
         \x20           dhcp4: false\n\
         \x20           addresses:\n\
         \x20           - 192.168.1.5/24\n\
         \x20           routes:\n\
         \x20           - to: 192.168.1.0/24\n\
         \x20             scope: link\n\
         \x20             table: 1001\n\
         \x20           - to: 0.0.0.0/0\n\
         \x20             via: 192.168.1.1\n\
         \x20             table: 1001\n\
         \x20           routing-policy:\n\
         \x20           - from: 192.168.1.0/24\n\
         \x20             table: 1001\n\
         \x20             priority: 1001\n\
         # then: netplan apply\n"
    );
    assert_eq!(
        nic_config(GuestOs::Ubuntu, &eni(), true),
        "rm /etc/netplan/51-eth1.yaml\nnetplan apply\n"
    );
    let w = GuestNic {
        ifname: "Ethernet 2",
        ..eni()
    };
    assert_eq!(
        nic_config(GuestOs::Windows, &w, false),
        "netsh interface ipv4 set address name=\"Ethernet 2\" source=static address=192.168.1.5 mask=255.255.255.0\n\
         netsh interface ipv4 add route 0.0.0.0/0 \"Ethernet 2\" 192.168.1.1 metric=500\n\
         ipconfig /all\n"
    );
    assert_eq!(
        nic_config(GuestOs::Windows, &w, true),
        "netsh interface ipv4 delete route 0.0.0.0/0 \"Ethernet 2\" 192.168.1.1\n\
         netsh interface ipv4 set address name=\"Ethernet 2\" source=dhcp\n"
    );
    assert_eq!(
        nic_config(GuestOs::Linux, &eni(), false),
        "ip link set eth1 up\n\
         ip addr add 192.168.1.5/24 dev eth1\n\
         ip route replace 192.168.1.0/24 dev eth1 src 192.168.1.5 table 1001\n\
         ip route replace default via 192.168.1.1 dev eth1 table 1001\n\
         ip rule add from 192.168.1.0/24 table 1001 priority 1001\n"
    );
    assert_eq!(
        nic_config(GuestOs::Linux, &eni(), true),
        "ip rule del from 192.168.1.0/24 table 1001 priority 1001\n\
         ip route flush table 1001\n\
         ip addr del 192.168.1.5/24 dev eth1\n"
    );
}

#[test]
fn the_primary_nic_keeps_the_main_table() {
    assert_eq!(nic().source_table(), None);
    assert_eq!(eni().source_table(), Some(1001));
    let linux = nic_config(GuestOs::Linux, &nic(), false);
    assert!(!linux.contains("rule"), "{linux}");
    assert!(
        linux.ends_with("ip route replace default via 192.168.0.1 dev eth0\n"),
        "{linux}"
    );
    let centos = nic_config(GuestOs::Centos, &nic(), false);
    assert!(centos.contains(" ipv4.gateway 192.168.0.1\n"), "{centos}");
    assert!(!centos.contains("never-default"), "{centos}");
}

#[test]
fn linux_adds_and_removes_the_vip_with_ip() {
    assert_eq!(
        vip_config(GuestOs::Linux, &eni(), vip(), false),
        "ip addr add 192.168.0.22/32 dev eth1\n"
    );
    assert_eq!(
        vip_config(GuestOs::Linux, &eni(), vip(), true),
        "ip addr del 192.168.0.22/32 dev eth1\n"
    );
}

fn vip() -> Ipv4Addr {
    "192.168.0.22".parse().unwrap()
}

#[test]
fn centos_is_the_seeds_nmcli() {
    assert_eq!(
        vip_config(GuestOs::Centos, &nic(), vip(), false),
        "nmcli connection modify \"System eth0\" +ipv4.addresses 192.168.0.22\n\
         nmcli connection up \"System eth0\"\n"
    );
    assert_eq!(
        vip_config(GuestOs::Centos, &nic(), vip(), true),
        "nmcli connection modify \"System eth0\" -ipv4.addresses 192.168.0.22\n\
         nmcli connection up \"System eth0\"\n"
    );
}

#[test]
fn ubuntu_is_the_seeds_netplan_file() {
    assert_eq!(
        vip_config(GuestOs::Ubuntu, &nic(), vip(), false),
        "# /etc/netplan/01-netcfg.yaml\n\
         network:\n\
         \x20   version: 2\n\
         \x20   renderer: NetworkManager\n\
         \x20   ethernets:\n\
         \x20       eth0:\n\
         \x20           dhcp4: true\n\
         \x20           addresses:\n\
         \x20           - 192.168.0.22/32\n\
         # then: netplan apply\n"
    );
    assert!(!vip_config(GuestOs::Ubuntu, &nic(), vip(), true).contains("addresses"));
}

#[test]
fn windows_is_netsh() {
    let w = GuestNic {
        ifname: "Ethernet",
        ..nic()
    };
    assert_eq!(
        vip_config(GuestOs::Windows, &w, vip(), false),
        "netsh interface ipv4 add address name=\"Ethernet\" address=192.168.0.22 mask=255.255.255.0\n\
         ipconfig /all\n"
    );
    assert_eq!(
        vip_config(GuestOs::Windows, &w, vip(), true),
        "netsh interface ipv4 delete address name=\"Ethernet\" address=192.168.0.22\n\
         ipconfig /all\n"
    );
}

#[test]
fn keepalived_conf_for_the_preferred_master() {
    let conf = keepalived_conf(
        "vip-1",
        vip(),
        "192.168.0.0/24".parse().unwrap(),
        &nic(),
        &["192.168.0.12".parse().unwrap()],
        &VrrpParams {
            rank: 0,
            vrid: vrid_of(vip()),
            advert_cs: 100,
        },
    );
    assert_eq!(
        conf,
        "! keepalived for VIP 192.168.0.22 (vip-1) on eth0 (192.168.0.11); peers: 192.168.0.12\n\
         ! Made by `vpcip vip guest-config --keepalived`.\n\
         global_defs {\n\
         \x20   router_id 192.168.0.11\n\
         \x20   vrrp_version 3\n\
         \x20   vrrp_garp_master_delay 1\n\
         \x20   vrrp_garp_master_refresh 60\n\
         }\n\
         vrrp_instance VI_vip_1 {\n\
         \x20   state BACKUP\n\
         \x20   interface eth0\n\
         \x20   virtual_router_id 128\n\
         \x20   priority 150\n\
         \x20   advert_int 1\n\
         \x20   virtual_ipaddress {\n\
         \x20       192.168.0.22/24 dev eth0\n\
         \x20   }\n\
         }\n"
    );
    let p = |rank, advert_cs| VrrpParams {
        rank,
        vrid: 1,
        advert_cs,
    };
    let net: Ipv4Net = "192.168.0.0/24".parse().unwrap();
    assert!(keepalived_conf("v", vip(), net, &nic(), &[], &p(1, 100)).contains("priority 140"));
    assert!(keepalived_conf("v", vip(), net, &nic(), &[], &p(0, 10)).contains("advert_int 0.1\n"));
    assert!(keepalived_conf("v", vip(), net, &nic(), &[], &p(0, 1)).contains("advert_int 0.01\n"));
    assert!(keepalived_conf("v", vip(), net, &nic(), &[], &p(0, 150)).contains("advert_int 1.5\n"));
}

#[test]
fn the_vrrp_command_matches_the_keepalived_conf() {
    assert_eq!(
        vrrp_command(
            "vip-1",
            vip(),
            "192.168.0.0/24".parse().unwrap(),
            &nic(),
            &VrrpParams {
                rank: 1,
                vrid: 128,
                advert_cs: 100
            }
        ),
        "vpcip vrrp --interface eth0 --vrid 128 --priority 140 --advert-int 100 --vip 192.168.0.22/24 --name VI_vip_1\n"
    );
}

#[test]
fn an_lvs_director_forwards_each_port_by_a_shared_hash() {
    let ports: Vec<LvsPort> = ["80", "53/udp"]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(
        lvs_director_nft(
            vip(),
            "eth0",
            &ports,
            &[
                "192.168.0.31".parse().unwrap(),
                "192.168.0.32".parse().unwrap()
            ]
        ),
        "# LVS direct routing for VIP 192.168.0.22 on eth0, without IPVS: nft -f <this file>\n\
         # Made by `vpcip vip guest-config --lvs-director`.\n\
         table netdev vpcip_lvs\n\
         delete table netdev vpcip_lvs\n\
         table netdev vpcip_lvs {\n\
         \x20   chain ingress {\n\
         \x20       type filter hook ingress device \"eth0\" priority 0; policy accept;\n\
         \x20       ip daddr 192.168.0.22 tcp dport 80 fwd ip to jhash ip saddr . tcp sport mod 2 seed 0x76706970 map { 0 : 192.168.0.31, 1 : 192.168.0.32 } device \"eth0\"\n\
         \x20       ip daddr 192.168.0.22 udp dport 53 fwd ip to jhash ip saddr . udp sport mod 2 seed 0x76706970 map { 0 : 192.168.0.31, 1 : 192.168.0.32 } device \"eth0\"\n\
         \x20   }\n\
         }\n"
    );
    assert!("0".parse::<LvsPort>().is_err());
    assert!("80/sctp".parse::<LvsPort>().unwrap_err().contains("sctp"));
    assert_eq!(
        "443/tcp".parse::<LvsPort>(),
        Ok(LvsPort {
            udp: false,
            port: 443
        })
    );
}

#[test]
fn an_lvs_backend_holds_the_vip_on_lo_without_arp() {
    assert_eq!(
        lvs_backend(vip(), "eth0", false),
        "sysctl -qw net.ipv4.conf.all.arp_ignore=1\n\
         sysctl -qw net.ipv4.conf.eth0.arp_ignore=1\n\
         sysctl -qw net.ipv4.conf.all.arp_announce=2\n\
         sysctl -qw net.ipv4.conf.eth0.arp_announce=2\n\
         ip addr add 192.168.0.22/32 dev lo\n"
    );
    assert_eq!(
        lvs_backend(vip(), "eth0", true),
        "ip addr del 192.168.0.22/32 dev lo\n"
    );
}

#[test]
fn vrids_are_in_range_and_stable() {
    for ip in ["0.0.0.0", "255.255.255.255", "10.0.0.100", "192.168.0.22"] {
        let v = vrid_of(ip.parse().unwrap());
        assert!(v >= 1);
        assert_eq!(v, vrid_of(ip.parse().unwrap()));
    }
}
