//! The API description (`docs/api/openapi.json`) and the router agree: every route of the table
//! is documented with its capability and security, and the document describes nothing else.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cairn_server::{Access, ROUTES};

fn document() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for route in ROUTES {
        let op = &paths
            .get(route.path)
            .unwrap_or_else(|| panic!("{} is not in openapi.json", route.path))
            [route.method.to_lowercase()];
        assert!(
            op.is_object(),
            "{} {} is not documented",
            route.method,
            route.path
        );
        let security = op["security"].as_array().unwrap();
        match route.access {
            Access::Public => assert!(security.is_empty(), "{route:?}"),
            Access::Tenant => assert_eq!(security[0]["bearer"], serde_json::json!([])),
            Access::Capability(cap) => {
                assert_eq!(security[0]["bearer"], serde_json::json!([]));
                assert_eq!(op["x-cairn-capability"], cap.as_str(), "{route:?}");
            }
            Access::DeviceSecret => {
                assert_eq!(security[0]["deviceSecret"], serde_json::json!([]));
            }
        }
        if route.path.contains("{tenant}") {
            let params = op["parameters"].as_array().unwrap();
            assert!(params.iter().any(|p| p["name"] == "tenant"), "{route:?}");
        }
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "openapi.json documents routes the router lacks"
    );
}
