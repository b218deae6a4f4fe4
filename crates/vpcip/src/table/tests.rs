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
