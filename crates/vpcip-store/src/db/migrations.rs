//! The schema, as migrations applied in order.

/// The schema, in order; each statement runs once, recorded in
/// `schema_migrations`. Only append.
pub(super) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE resources (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        name TEXT,
        parent TEXT,
        attached TEXT,
        doc TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE UNIQUE INDEX resources_name ON resources (kind, tenant, name)",
    "CREATE INDEX resources_parent ON resources (kind, parent)",
    "CREATE INDEX resources_attached ON resources (attached)",
    "CREATE INDEX resources_list ON resources (kind, tenant, id)",
    "CREATE TABLE ip_allocations (
        subnet_id TEXT NOT NULL,
        addr BIGINT NOT NULL,
        owner_id TEXT NOT NULL,
        PRIMARY KEY (subnet_id, addr)
    )",
    "CREATE INDEX ip_allocations_owner ON ip_allocations (owner_id)",
    "CREATE TABLE ip_free_ranges (
        subnet_id TEXT NOT NULL,
        lo BIGINT NOT NULL,
        hi BIGINT NOT NULL,
        PRIMARY KEY (subnet_id, lo)
    )",
    "CREATE TABLE vip_bindings (
        vip_id TEXT NOT NULL,
        nic_id TEXT NOT NULL,
        PRIMARY KEY (vip_id, nic_id)
    )",
    "CREATE INDEX vip_bindings_nic ON vip_bindings (nic_id)",
    "CREATE TABLE eip_bindings (
        target_id TEXT PRIMARY KEY,
        eip_id TEXT NOT NULL UNIQUE,
        mode TEXT NOT NULL
    )",
    "CREATE TABLE client_tokens (
        tenant TEXT NOT NULL,
        token TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        PRIMARY KEY (tenant, token)
    )",
    "CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        description TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    // Lookups by name across tenants (`find`): without it, an ID-or-name
    // lookup scans every resource of the kind.
    "CREATE INDEX resources_by_name ON resources (kind, name)",
    // Every committed write bumps the revision; agents watch it.
    "CREATE TABLE revision (id BIGINT PRIMARY KEY, value BIGINT NOT NULL)",
    "INSERT INTO revision (id, value) VALUES (1, 0)",
    // Agents' reports: written without bumping the revision (a report is
    // not a change of desired state).
    "CREATE TABLE agent_status (
        agent_id TEXT PRIMARY KEY,
        applied_revision BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        error TEXT
    )",
    // Small numbers handed out once per owner: subnets' VNIs (pool 'vni')
    // and VPC routers' link numbers (pool 'router'), unique by key.
    "CREATE TABLE numbers (
        pool TEXT NOT NULL,
        n BIGINT NOT NULL,
        owner TEXT NOT NULL,
        PRIMARY KEY (pool, n)
    )",
    "CREATE INDEX numbers_owner ON numbers (owner)",
    // Per-EIP counters as the gateways report them (not desired state: no
    // revision bump), and when each gateway last reported.
    "CREATE TABLE eip_counters (
        ip BIGINT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        packets_in BIGINT NOT NULL,
        bytes_in BIGINT NOT NULL,
        packets_out BIGINT NOT NULL,
        bytes_out BIGINT NOT NULL
    )",
    "CREATE TABLE counter_reports (agent_id TEXT PRIMARY KEY, at BIGINT NOT NULL)",
    // Which MAC each gateway's routers resolve each VIP to.
    "CREATE TABLE vip_holders (
        vpc_id TEXT NOT NULL,
        ip BIGINT NOT NULL,
        mac TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        PRIMARY KEY (vpc_id, ip)
    )",
    // Packets each EIP's bandwidth limit dropped, both ways.
    "ALTER TABLE eip_counters ADD COLUMN drops_in BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE eip_counters ADD COLUMN drops_out BIGINT NOT NULL DEFAULT 0",
    // The EIPs each gateway's data plane holds, as it last reported them.
    "CREATE TABLE gateway_eips (
        agent_id TEXT NOT NULL,
        ip BIGINT NOT NULL,
        PRIMARY KEY (agent_id, ip)
    )",
    // Agents' tokens serve the agent routes only.
    "ALTER TABLE api_tokens ADD COLUMN agent BIGINT NOT NULL DEFAULT 0",
    // ... for one agent: the token's tenant is its name, this its role
    // (NULL on agent tokens made before: refused).
    "ALTER TABLE api_tokens ADD COLUMN agent_role TEXT",
    // Host agents: the NICs whose port is missing (a JSON array of IDs).
    "ALTER TABLE agent_status ADD COLUMN missing TEXT",
    // Packets each NIC's security groups dropped, as its host reported.
    "CREATE TABLE nic_drops (
        nic_id TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        packets_in BIGINT NOT NULL,
        packets_out BIGINT NOT NULL
    )",
    // What a client token's request was (a digest of its body): the same
    // token with another body is refused (NULL for tokens made before).
    "ALTER TABLE client_tokens ADD COLUMN request TEXT",
    // Gateway agents: what they carry and their BGP sessions (JSON).
    "ALTER TABLE agent_status ADD COLUMN cluster TEXT",
    // Every gateway counts the EIPs it passes: one row per EIP and
    // gateway (an EIP's traffic is their sum).
    "CREATE TABLE eip_traffic (
        ip BIGINT NOT NULL,
        agent_id TEXT NOT NULL,
        packets_in BIGINT NOT NULL,
        bytes_in BIGINT NOT NULL,
        packets_out BIGINT NOT NULL,
        bytes_out BIGINT NOT NULL,
        drops_in BIGINT NOT NULL,
        drops_out BIGINT NOT NULL,
        PRIMARY KEY (ip, agent_id)
    )",
    "INSERT INTO eip_traffic SELECT ip, agent_id, packets_in, bytes_in, packets_out, bytes_out, drops_in, drops_out FROM eip_counters",
    // A token that is also an EC2 credential: its secret access key
    // (SigV4 needs it to check a signature; the bearer secret stays hashed).
    "ALTER TABLE api_tokens ADD COLUMN ec2_secret TEXT",
    // The change log the watch follows: each committed write's resources
    // (their document, NULL once deleted) under the revision it made. Row
    // 2 of `revision` is the log's floor: changes up to it are pruned, so
    // a reader behind it loads the whole world again.
    "CREATE TABLE changes (
        rev BIGINT NOT NULL,
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        doc TEXT,
        PRIMARY KEY (rev, id)
    )",
    "INSERT INTO revision (id, value) SELECT 2, value FROM revision WHERE id = 1",
    // Servers keep their host in `attached`: each host's load is one index
    // range (placement), not a read of every server.
    "CREATE INDEX resources_kind_attached ON resources (kind, attached)",
    // Resources per tenant and kind, kept by every insert and delete: a
    // quota is checked against one row, not a count of every resource.
    "CREATE TABLE usage (
        tenant TEXT NOT NULL,
        kind TEXT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (tenant, kind)
    )",
    "INSERT INTO usage (tenant, kind, n) SELECT tenant, kind, COUNT(*) FROM resources GROUP BY tenant, kind",
    // An hour of each EIP's counters, as each gateway reported them: the
    // latest report in each sample slot (`slot` = report time divided by
    // the slot's length), for the console's traffic plots.
    "CREATE TABLE eip_traffic_history (
        ip BIGINT NOT NULL,
        agent_id TEXT NOT NULL,
        slot BIGINT NOT NULL,
        at BIGINT NOT NULL,
        packets_in BIGINT NOT NULL,
        bytes_in BIGINT NOT NULL,
        packets_out BIGINT NOT NULL,
        bytes_out BIGINT NOT NULL,
        drops_in BIGINT NOT NULL,
        drops_out BIGINT NOT NULL,
        PRIMARY KEY (ip, agent_id, slot)
    )",
    "CREATE INDEX eip_traffic_history_at ON eip_traffic_history (at)",
    // When a gateway last counted a packet coming in for the EIP: a
    // segment whose EIPs receive packets is routed to the gateways.
    "ALTER TABLE eip_traffic ADD COLUMN last_in_at BIGINT NOT NULL DEFAULT 0",
    // Allocations by address: a gateway's counters are kept only for the
    // addresses an EIP holds.
    "CREATE INDEX ip_allocations_addr ON ip_allocations (addr)",
    // Free ranges by their upper end, which taking a range's lowest
    // address leaves alone: allocators waiting for the same range follow
    // it by this key (PostgreSQL).
    "CREATE UNIQUE INDEX ip_free_ranges_hi ON ip_free_ranges (subnet_id, hi)",
];
