//! Output for people (aligned tables) and for scripts (JSON).

use serde::Serialize;
use serde_json::Value;
use vpcip_model::*;

use crate::cli::Output;

/// A resource shown as one row of a list.
pub trait Tabular {
    const HEADER: &'static [&'static str];
    fn row(&self) -> Vec<String>;
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}

impl Tabular for Zone {
    const HEADER: &'static [&'static str] = &["ID", "NAME"];
    fn row(&self) -> Vec<String> {
        vec![self.id.clone(), self.name.clone()]
    }
}

impl Tabular for HostNetwork {
    const HEADER: &'static [&'static str] = &["ID", "NAME", "CIDR"];
    fn row(&self) -> Vec<String> {
        vec![self.id.clone(), self.name.clone(), self.cidr.to_string()]
    }
}

impl Tabular for Gateway {
    const HEADER: &'static [&'static str] = &["ID", "NAME", "UNDERLAY IP", "DEFAULT SNAT"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.underlay_ip.to_string(),
            snat(self),
        ]
    }
}

/// A gateway with its agent, if one registered.
#[derive(Serialize)]
pub struct GatewayHealth {
    #[serde(flatten)]
    pub gateway: Gateway,
    pub agent: Option<vpcip_model::desired::Agent>,
}

fn health(a: &vpcip_model::desired::Agent) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    a.health(now)
}

/// A gateway's default SNAT address, or why VMs without an EIP reach
/// nothing outside.
fn snat(g: &Gateway) -> String {
    g.snat_ip
        .map_or_else(|| "none (no EIP segment)".into(), |ip| ip.to_string())
}

impl Tabular for GatewayHealth {
    const HEADER: &'static [&'static str] = &[
        "ID",
        "NAME",
        "UNDERLAY IP",
        "DEFAULT SNAT",
        "SLOT",
        "CARRIES",
        "BGP",
        "AGENT",
        "APPLIED REVISION",
    ];
    fn row(&self) -> Vec<String> {
        let g = &self.gateway;
        let report = self.agent.as_ref().and_then(|a| a.cluster.as_ref());
        let slot = if g.drained {
            format!("{} (drained)", g.slot)
        } else {
            g.slot.to_string()
        };
        let carries = match report {
            Some(c) if c.carrying.is_empty() => "nothing".into(),
            Some(c) => format!(
                "slot{} {}",
                if c.carrying.len() > 1 { "s" } else { "" },
                c.carrying
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            None => "-".into(),
        };
        vec![
            g.id.clone(),
            g.name.clone(),
            g.underlay_ip.to_string(),
            snat(g),
            slot,
            carries,
            bgp(g, report),
            self.agent
                .as_ref()
                .map_or_else(|| "no agent".into(), health),
            self.agent
                .as_ref()
                .map_or_else(|| "-".into(), |a| a.applied_revision.to_string()),
        ]
    }
}

/// A gateway's BGP sessions as its agent reported them: `static` without
/// BGP; each peer's state and the routes announced to it.
fn bgp(g: &Gateway, report: Option<&vpcip_model::desired::ClusterReport>) -> String {
    let Some(cfg) = &g.bgp else {
        return "static".into();
    };
    if let Some(e) = report.and_then(|r| r.bgp_error.as_deref()) {
        return format!("error: {e}");
    }
    let sessions = report.map(|r| r.bgp.as_slice()).unwrap_or_default();
    cfg.peers
        .iter()
        .map(|p| match sessions.iter().find(|s| s.peer == p.ip) {
            Some(s) if s.state == "established" => {
                format!("{} established, {} routes", p.ip, s.exported)
            }
            Some(s) if s.info.is_empty() => format!("{} {}", p.ip, s.state),
            Some(s) => format!("{} {} ({})", p.ip, s.state, s.info),
            None => format!("{} not reported yet", p.ip),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Tabular for vpcip_model::desired::Agent {
    const HEADER: &'static [&'static str] =
        &["ID", "NAME", "UNDERLAY IP", "HEALTH", "APPLIED REVISION"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.underlay_ip.to_string(),
            health(self),
            self.applied_revision.to_string(),
        ]
    }
}

impl Tabular for PhysicalRoute {
    const HEADER: &'static [&'static str] = &["NETWORK PREFIX", "NEXT HOP", "GATEWAY"];
    fn row(&self) -> Vec<String> {
        vec![
            self.prefix.to_string(),
            self.next_hop.to_string(),
            self.gateway.clone(),
        ]
    }
}

impl Tabular for Vpc {
    const HEADER: &'static [&'static str] = &["ID", "NAME", "TENANT", "CIDR", "SECONDARY CIDRS"];
    fn row(&self) -> Vec<String> {
        let sec: Vec<String> = self
            .secondary_cidrs
            .iter()
            .map(ToString::to_string)
            .collect();
        vec![
            self.id.clone(),
            self.name.clone(),
            self.tenant.clone(),
            self.cidr.to_string(),
            if sec.is_empty() {
                "-".into()
            } else {
                sec.join(",")
            },
        ]
    }
}

impl Tabular for Subnet {
    const HEADER: &'static [&'static str] = &[
        "ID", "NAME", "TYPE", "VPC", "ZONE", "CIDR", "RANGE", "GATEWAY", "USED",
    ];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.kind.as_str().into(),
            self.vpc_id.clone(),
            opt(&self.zone_id),
            self.cidr.to_string(),
            format!("{}-{}", self.range_start, self.range_end),
            opt(&self.gateway),
            format!("{}/{}", self.used, self.total),
        ]
    }
}

impl Tabular for SecurityGroup {
    const HEADER: &'static [&'static str] = &["ID", "NAME", "VPC", "TYPE", "MANAGED", "RULES"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.vpc_id.clone(),
            self.kind.as_str().into(),
            self.managed.to_string(),
            self.rules.len().to_string(),
        ]
    }
}

impl Tabular for Server {
    const HEADER: &'static [&'static str] = &["ID", "NAME", "TENANT", "ZONE", "HOST", "NICS"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.tenant.clone(),
            self.zone_id.clone(),
            self.host.clone().unwrap_or_else(|| "-".into()),
            self.nic_ids.join(","),
        ]
    }
}

impl Tabular for Nic {
    const HEADER: &'static [&'static str] = &[
        "ID",
        "NAME",
        "SUBNET",
        "IP",
        "MAC",
        "SERVER",
        "PRIMARY",
        "SRC/DST CHECK",
        "VIPS",
    ];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.subnet_id.clone(),
            self.ip.to_string(),
            self.mac.clone(),
            opt(&self.server_id),
            self.primary.to_string(),
            if self.source_dest_check { "on" } else { "off" }.into(),
            self.vip_ids.len().to_string(),
        ]
    }
}

impl Tabular for Vip {
    const HEADER: &'static [&'static str] = &["ID", "NAME", "SUBNET", "IP", "NICS", "EIP"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.subnet_id.clone(),
            self.ip.to_string(),
            if self.nic_ids.is_empty() {
                "-".into()
            } else {
                self.nic_ids.join(",")
            },
            opt(&self.eip_id),
        ]
    }
}

impl Tabular for Eip {
    const HEADER: &'static [&'static str] = &[
        "ID",
        "NAME",
        "IP",
        "BANDWIDTH",
        "MODE",
        "BOUND TO",
        "SERVER",
        "PRIVATE IP",
        "ALGS",
        "TENANT",
    ];
    fn row(&self) -> Vec<String> {
        let bound = match (&self.nic_id, &self.vip_id) {
            (Some(n), _) => format!("nic {n}"),
            (_, Some(v)) => format!("vip {v}"),
            _ => "-".into(),
        };
        vec![
            self.id.clone(),
            if self.name.is_empty() {
                "-".into()
            } else {
                self.name.clone()
            },
            self.ip.to_string(),
            if self.bandwidth_mbps >= vpcip_model::rules::MAX_BANDWIDTH_MBPS {
                "unlimited".into()
            } else {
                format!("{} Mbit/s", self.bandwidth_mbps)
            },
            self.mode.as_str().into(),
            bound,
            opt(&self.server_id),
            opt(&self.private_ip),
            if self.algs.is_empty() {
                "-".into()
            } else {
                self.algs
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            },
            self.tenant.clone(),
        ]
    }
}

impl Tabular for Token {
    const HEADER: &'static [&'static str] = &["ID", "TENANT", "AGENT", "DESCRIPTION"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.tenant.clone(),
            match (self.agent, self.agent_role) {
                (false, _) => "-".into(),
                (true, Some(r)) => format!("{} ({})", self.tenant, r.as_str()),
                (true, None) => "no role: refused".into(),
            },
            self.description.clone(),
        ]
    }
}

pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s += c;
            } else {
                s += &format!("{c:<w$}  ");
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out += &line(r.clone());
    }
    out
}

/// The field `--field` asks for, when it does (set once, at start).
pub static FIELD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `v`'s field `name` as a line: a string bare, anything else as JSON.
fn field_of(v: &Value, name: &str) -> anyhow::Result<String> {
    match v.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) => Ok(String::new()),
        Some(other) => Ok(other.to_string()),
        None => {
            let fields: Vec<&str> = match v {
                Value::Object(m) => m.keys().map(String::as_str).collect(),
                _ => vec![],
            };
            anyhow::bail!(
                "--field {name}: no such field here; the fields are {}",
                fields.join(", ")
            )
        }
    }
}

/// The columns `--columns` asks for, when it does (set once, at start).
pub static COLUMNS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// `v` as YAML: maps and lists in block style, strings double-quoted with
/// JSON's escapes (which YAML's double-quoted scalars take), numbers,
/// booleans and `null` as they are. Keys are identifiers, written bare.
pub fn to_yaml(v: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => Value::String(s.clone()).to_string(),
            other => other.to_string(),
        }
    }
    fn emit(v: &Value, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, val) in m {
                    match val {
                        Value::Object(c) if !c.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            emit(val, indent + 2, out);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            emit(val, indent, out);
                        }
                        _ => out.push_str(&format!("{pad}{k}: {}\n", inline(val))),
                    }
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for item in a {
                    match item {
                        Value::Object(c) if !c.is_empty() => {
                            // The first key on the dash's line.
                            let mut inner = String::new();
                            emit(item, indent + 2, &mut inner);
                            out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                        }
                        Value::Array(c) if !c.is_empty() => {
                            out.push_str(&format!("{pad}-\n"));
                            emit(item, indent + 2, out);
                        }
                        _ => out.push_str(&format!("{pad}- {}\n", inline(item))),
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", inline(other))),
        }
    }
    fn inline(v: &Value) -> String {
        match v {
            Value::Object(_) => "{}".into(),
            Value::Array(_) => "[]".into(),
            other => scalar(other),
        }
    }
    let mut out = String::new();
    emit(v, 0, &mut out);
    out
}

/// A record or a list for scripts: JSON (pretty) or YAML.
pub fn print_value(v: &Value, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Yaml => print!("{}", to_yaml(v)),
        _ => println!("{}", serde_json::to_string_pretty(v)?),
    }
    Ok(())
}

/// `rows` under `header`, reduced to the columns `--columns` names (by
/// heading, any case), in its order; all when it names none.
pub fn select_columns(
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let Some(wanted) = COLUMNS.get().filter(|c| !c.is_empty()) else {
        return Ok((header.iter().map(|h| (*h).to_string()).collect(), rows));
    };
    let mut idx = Vec::new();
    for w in wanted {
        let i = header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(w.trim()))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--columns {w}: no such column here; the columns are {}",
                    header.join(", ")
                )
            })?;
        idx.push(i);
    }
    let head = idx.iter().map(|i| header[*i].to_string()).collect();
    let rows = rows
        .into_iter()
        .map(|r| {
            idx.iter()
                .map(|i| r.get(*i).cloned().unwrap_or_default())
                .collect()
        })
        .collect();
    Ok((head, rows))
}

pub fn print_list<T: Tabular + Serialize>(items: &[T], output: Output) -> anyhow::Result<()> {
    if let Some(name) = FIELD.get() {
        for item in items {
            println!("{}", field_of(&serde_json::to_value(item)?, name)?);
        }
        return Ok(());
    }
    match output {
        Output::Json | Output::Yaml => print_value(&serde_json::to_value(items)?, output)?,
        Output::Table => {
            let rows: Vec<Vec<String>> = items.iter().map(Tabular::row).collect();
            let (head, rows) = select_columns(T::HEADER, rows)?;
            let head: Vec<&str> = head.iter().map(String::as_str).collect();
            print!("{}", render_table(&head, &rows));
        }
    }
    Ok(())
}

/// One resource: its fields, one per line (JSON with `-o json`).
pub fn print_one<T: Serialize>(item: &T, output: Output) -> anyhow::Result<()> {
    let v = serde_json::to_value(item)?;
    if let Some(name) = FIELD.get() {
        println!("{}", field_of(&v, name)?);
        return Ok(());
    }
    match output {
        Output::Json | Output::Yaml => print_value(&v, output)?,
        Output::Table => print!("{}", render_fields(&in_order(item)?)),
    }
    Ok(())
}

/// A record's fields in the order its type declares them (an `id`, a
/// `name`, then what matters most), where a JSON value would sort them.
fn in_order<T: Serialize>(item: &T) -> anyhow::Result<Value> {
    let text = serde_json::to_string(item)?;
    Ok(
        match serde_json::from_str::<indexmap::IndexMap<String, Value>>(&text) {
            Ok(fields) => Value::Array(
                fields
                    .into_iter()
                    .map(|(k, v)| Value::Array(vec![Value::String(k), v]))
                    .collect(),
            ),
            Err(_) => serde_json::from_str(&text)?,
        },
    )
}

/// One record's fields, one per line: from an object (sorted), or from
/// `[name, value]` pairs in their order (see `in_order`).
pub fn render_fields(v: &Value) -> String {
    let pairs: Vec<(String, &Value)> = match v {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|p| match p {
                Value::Array(kv) if kv.len() == 2 => {
                    Some((kv[0].as_str().unwrap_or_default().to_string(), &kv[1]))
                }
                _ => None,
            })
            .collect(),
        other => return format!("{other}\n"),
    };
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, val) in pairs {
        let shown = match val {
            Value::Null => "-".to_string(),
            Value::String(s) => s.clone(),
            Value::Array(a) if a.iter().all(|x| x.is_string()) => {
                let parts: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                if parts.is_empty() {
                    "-".into()
                } else {
                    parts.join(", ")
                }
            }
            other => other.to_string(),
        };
        out += &format!("{k:<width$}  {shown}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = render_table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }

    #[test]
    fn yaml_is_block_style_with_quoted_strings() {
        let v = serde_json::json!([
            {"id": "eip-1", "ip": "203.0.113.1", "nic_id": null, "algs": ["ftp", "sip"],
             "traffic": {"packets_in": 3}, "tags": [], "note": "a: \"b\"\n"}
        ]);
        assert_eq!(
            to_yaml(&v),
            "- algs:\n  - \"ftp\"\n  - \"sip\"\n  id: \"eip-1\"\n  ip: \"203.0.113.1\"\n  nic_id: null\n  note: \"a: \\\"b\\\"\\n\"\n  tags: []\n  traffic:\n    packets_in: 3\n"
        );
    }

    #[test]
    fn columns_are_chosen_by_heading() {
        let rows = vec![vec!["eip-1".into(), "web".into(), "203.0.113.1".into()]];
        let _ = COLUMNS.set(vec!["ip".into(), "ID".into()]);
        let (head, rows) = select_columns(&["ID", "NAME", "IP"], rows).unwrap();
        assert_eq!(head, ["IP", "ID"]);
        assert_eq!(rows, [["203.0.113.1", "eip-1"]]);
        assert!(select_columns(&["ID"], vec![]).is_err());
    }

    #[test]
    fn shown_fields_keep_their_declared_order() {
        #[derive(Serialize)]
        struct R {
            id: &'static str,
            name: &'static str,
            bandwidth: u32,
            allowed: Vec<&'static str>,
        }
        let r = R {
            id: "eip-1",
            name: "web",
            bandwidth: 10,
            allowed: vec![],
        };
        assert_eq!(
            render_fields(&in_order(&r).unwrap()),
            "id         eip-1\nname       web\nbandwidth  10\nallowed    -\n"
        );
    }

    #[test]
    fn fields_show_lists_and_nulls() {
        let v = serde_json::json!({"id": "eip-1", "nic_id": null, "tags": ["a", "b"]});
        assert_eq!(
            render_fields(&v),
            "id      eip-1\nnic_id  -\ntags    a, b\n"
        );
    }
}
