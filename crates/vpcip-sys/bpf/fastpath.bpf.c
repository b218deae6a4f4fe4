// SPDX-License-Identifier: GPL-2.0
/*
 * vpcip's established-flow fast path, at tc ingress of a host's VM ports
 * and VXLAN devices (a cls_bpf filter in direct-action mode).
 *
 * The security groups are an nftables filter that bridged IPv4 reaches
 * through br_netfilter, with conntrack in each VPC's zone. Every packet
 * pays for that walk. This program lets through, around the bridge, only
 * packets that walk would pass anyway without looking at any rule: those
 * of a connection conntrack already holds as established in both
 * directions (the filter's first rule accepts them). Everything else, and
 * everything this program is unsure of, goes on to the bridge as before
 * (TC_ACT_UNSPEC: any other tc filter there, then the stack): new
 * connections, TCP SYN/FIN/RST, ICMP, ARP, multicast and
 * broadcast, fragments, IP options, VLAN-tagged frames, packets longer
 * than their frame, DHCP, NATed or helped connections, frames to
 * the host, unknown ports.
 *
 * What the bridge and the port guards would have checked is checked here
 * for the packets taken: the frame from a VM port comes from the port's
 * own MAC and, when its source/destination check is on, from an address
 * the port may send from (map vp_allowed, the port guards' `allowed`);
 * it goes to the port of its destination MAC on the same bridge, or to
 * the bridge's tunnel when no local port has that MAC (VM ports take no
 * unknown unicast: the bridge would send it to the tunnel alone). A frame
 * from the tunnel goes to a local port by its destination MAC, or on to
 * the bridge.
 *
 * A connection taken around conntrack is not refreshed by its packets:
 * the program refreshes its timeout when less than half is left. The
 * host agent turns on nf_conntrack_tcp_be_liberal in the namespace, since
 * conntrack sees only the packets that are not taken (window tracking
 * would find a FIN far beyond the last window it saw).
 *
 * The maps are filled by the host agent from the same desired state as
 * the port guards and the filter (vpcip-sys/src/fastpath.rs).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* The kernel's types, read through CO-RE: only the fields used here. */
struct bpf_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u16 ct_zone_id;
	__u8 ct_zone_dir;
	__u8 reserved[3];
};
struct ip_ct_tcp {
	__u8 state;
} __attribute__((preserve_access_index));
union nf_conntrack_proto {
	struct ip_ct_tcp tcp;
} __attribute__((preserve_access_index));
struct nf_conn {
	__u32 timeout;
	unsigned long status;
	union nf_conntrack_proto proto;
} __attribute__((preserve_access_index));

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *tuple,
					 __u32 tuple__sz, struct bpf_ct_opts *opts,
					 __u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;
extern int bpf_ct_change_timeout(struct nf_conn *ct, __u32 timeout) __ksym;
/* 0 where the kernel's configuration cannot be read: then every packet
 * taken refreshes its connection, as conntrack itself would. */
extern int CONFIG_HZ __kconfig __weak;

#define BPF_F_CURRENT_NETNS (-1)
#define OPTS_SZ 16
/* enum ip_conntrack_status */
#define IPS_SEEN_REPLY (1UL << 1)
#define IPS_ASSURED (1UL << 2)
#define IPS_CONFIRMED (1UL << 3)
#define IPS_NAT_MASK ((1UL << 4) | (1UL << 5))
#define IPS_SEQ_ADJUST (1UL << 6)
#define IPS_HELPER (1UL << 13)
#define IPS_DYING (1UL << 9)
#define TCP_CONNTRACK_ESTABLISHED 3
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* A port (a VM's, or a bridge's tunnel) this program is attached to. */
struct port {
	__u32 tunnel;   /* the ifindex of its bridge's tunnel device */
	__u16 zone;     /* its VPC's conntrack zone */
	__u8 mac[6];    /* a VM port's MAC; zero for a tunnel */
	__u8 kind;      /* 1: a VM port, 2: a tunnel */
	__u8 guarded;   /* source/destination check on */
	__u8 pad[2];
};
#define KIND_VM 1
#define KIND_TUNNEL 2

struct src {
	__u32 ifindex;
	__u32 addr;     /* network order */
};

struct dst {
	__u32 tunnel;   /* the bridge, by its tunnel's ifindex */
	__u8 mac[6];
	__u8 pad[2];
};

struct conf {
	__u32 tcp_ms;   /* nf_conntrack_tcp_timeout_established, ms */
	__u32 udp_ms;   /* nf_conntrack_udp_timeout_stream, ms */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct port);
	__uint(max_entries, 65536);
} vp_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct src);
	__type(value, __u8);
	__uint(max_entries, 262144);
} vp_allowed SEC(".maps");

/* Local destinations: a VM port's ifindex, or 0 for a MAC whose frames
 * must take the bridge (the bridge's own). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct dst);
	__type(value, __u32);
	__uint(max_entries, 65536);
} vp_dests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct conf);
	__uint(max_entries, 1);
} vp_conf SEC(".maps");

/* Packets taken around the bridge, per CPU (for `vpcip` and the tests). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} vp_taken SEC(".maps");

static __always_inline int same_mac(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
	       a[5] == b[5];
}

SEC("tc")
int vpcip_fastpath(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct bpf_sock_tuple tuple = {};
	struct bpf_ct_opts opts = {};
	struct port *in;
	struct dst d = {};
	struct conf *conf;
	struct nf_conn *ct;
	__u32 key = 0, out, ifindex = skb->ifindex, ms;
	__u32 *dest;
	__u64 *taken;
	unsigned long status;
	int ok;

	/* A VLAN tag (taken off into the skb's metadata) is the bridge's. */
	if (skb->vlan_present)
		return TC_ACT_UNSPEC;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	if (eth->h_dest[0] & 1) /* multicast, broadcast */
		return TC_ACT_UNSPEC;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5 || ip->version != 4)
		return TC_ACT_UNSPEC;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return TC_ACT_UNSPEC;
	/* A packet longer than its frame is br_netfilter's to drop. */
	if (bpf_ntohs(ip->tot_len) < sizeof(*ip) ||
	    bpf_ntohs(ip->tot_len) + sizeof(*eth) > skb->len)
		return TC_ACT_UNSPEC;
	tuple.ipv4.saddr = ip->saddr;
	tuple.ipv4.daddr = ip->daddr;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *th = (void *)(ip + 1);

		if ((void *)(th + 1) > data_end || th->syn || th->fin || th->rst)
			return TC_ACT_UNSPEC;
		tuple.ipv4.sport = th->source;
		tuple.ipv4.dport = th->dest;
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *uh = (void *)(ip + 1);

		if ((void *)(uh + 1) > data_end)
			return TC_ACT_UNSPEC;
		/* DHCP is the host agent's or nobody's. */
		if (uh->dest == bpf_htons(67) || uh->dest == bpf_htons(68) ||
		    uh->source == bpf_htons(67) || uh->source == bpf_htons(68))
			return TC_ACT_UNSPEC;
		tuple.ipv4.sport = uh->source;
		tuple.ipv4.dport = uh->dest;
	} else {
		return TC_ACT_UNSPEC;
	}

	in = bpf_map_lookup_elem(&vp_ports, &ifindex);
	if (!in)
		return TC_ACT_UNSPEC;
	d.tunnel = in->tunnel;
	__builtin_memcpy(d.mac, eth->h_dest, 6);
	dest = bpf_map_lookup_elem(&vp_dests, &d);
	if (in->kind == KIND_VM) {
		/* The port guards' checks: its own MAC, its own addresses. */
		if (!same_mac(eth->h_source, in->mac))
			return TC_ACT_UNSPEC;
		if (in->guarded) {
			struct src s = { .ifindex = ifindex, .addr = ip->saddr };

			if (!bpf_map_lookup_elem(&vp_allowed, &s))
				return TC_ACT_UNSPEC;
		}
		out = dest ? *dest : in->tunnel;
	} else if (in->kind == KIND_TUNNEL) {
		out = dest ? *dest : 0;
	} else {
		return TC_ACT_UNSPEC;
	}
	if (out == 0 || out == ifindex)
		return TC_ACT_UNSPEC;
	/* Where it goes is a port of the same bridge and VPC: a VM port with
	 * that MAC, or the bridge's tunnel (never a link the maps no longer
	 * describe so). */
	{
		struct port *to = bpf_map_lookup_elem(&vp_ports, &out);

		if (!to || to->tunnel != in->tunnel || to->zone != in->zone)
			return TC_ACT_UNSPEC;
		if (to->kind == KIND_VM ? !same_mac(to->mac, eth->h_dest) : out != in->tunnel)
			return TC_ACT_UNSPEC;
	}

	opts.netns_id = BPF_F_CURRENT_NETNS;
	opts.l4proto = ip->protocol;
	opts.ct_zone_id = in->zone;
	ct = bpf_skb_ct_lookup(skb, &tuple, sizeof(tuple.ipv4), &opts, OPTS_SZ);
	if (!ct)
		return TC_ACT_UNSPEC;
	status = ct->status;
	ok = (status & (IPS_CONFIRMED | IPS_SEEN_REPLY)) == (IPS_CONFIRMED | IPS_SEEN_REPLY) &&
	     !(status & (IPS_DYING | IPS_NAT_MASK | IPS_SEQ_ADJUST | IPS_HELPER));
	conf = bpf_map_lookup_elem(&vp_conf, &key);
	if (!conf)
		ok = 0;
	if (ok) {
		if (opts.l4proto == IPPROTO_TCP) {
			ok = ct->proto.tcp.state == TCP_CONNTRACK_ESTABLISHED;
			ms = conf->tcp_ms;
		} else {
			ok = (status & IPS_ASSURED) != 0;
			ms = conf->udp_ms;
		}
	}
	if (ok && ms) {
		/* Refreshed when less than half of its timeout is left. */
		__s32 left = (__s32)(ct->timeout - (__u32)bpf_jiffies64());
		__u64 half = (__u64)ms * CONFIG_HZ / 2000;

		if (!CONFIG_HZ || left < 0 || (__u64)left < half)
			bpf_ct_change_timeout(ct, ms);
	}
	bpf_ct_release(ct);
	if (!ok || !ms)
		return TC_ACT_UNSPEC;
	taken = bpf_map_lookup_elem(&vp_taken, &key);
	if (taken)
		*taken += 1;
	return bpf_redirect(out, 0);
}

char LICENSE[] SEC("license") = "GPL";
