use vpcip_model::filter::FilterElement;

use super::elements::{element_keys, element_of};

#[test]
fn rule_elements_read_back_as_written() {
    for remote in ["0.0.0.0/0", "10.0.0.0/8", "10.1.2.3/32", "192.0.2.128/25"] {
        let e = FilterElement::new((6, 6), (80, 443), remote.parse().unwrap());
        let (k, end) = element_keys(&e);
        assert_eq!(element_of(&k, &end), Some(e), "{remote}");
    }
}
