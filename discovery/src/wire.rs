//! The parts of Consul's JSON answers we read, and how they become our types.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Instance;

/// One element of `GET /v1/health/service/:name`, the fields we read.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HealthEntry {
    node: HealthNode,
    service: HealthService,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthNode {
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthService {
    #[serde(rename = "ID")]
    id: String,
    service: String,
    address: String,
    port: u16,
    tags: Option<Vec<String>>,
    meta: Option<BTreeMap<String, String>>,
}

impl From<HealthEntry> for Instance {
    /// A service registered without an address is reached at its node's address, as Consul's
    /// DNS interface does.
    fn from(entry: HealthEntry) -> Self {
        let HealthService {
            id,
            service,
            address,
            port,
            tags,
            meta,
        } = entry.service;
        let address = if address.is_empty() {
            entry.node.address
        } else {
            address
        };
        Instance {
            id,
            name: service,
            address,
            port,
            tags: tags.unwrap_or_default(),
            meta: meta.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_without_address_takes_its_nodes() {
        let json = r#"{"Node":{"Address":"10.0.0.9"},"Service":{"ID":"u1","Service":"users",
            "Address":"","Port":80,"Tags":null,"Meta":null}}"#;
        let entry: HealthEntry = serde_json::from_str(json).expect("valid health entry");
        let instance = Instance::from(entry);
        assert_eq!(
            (instance.address.as_str(), instance.tags.len()),
            ("10.0.0.9", 0)
        );
    }
}
