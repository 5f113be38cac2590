//! The User Access Brands Bundle (spec digest §1.13, checklist items 111–112): the brand a
//! patient app shows for this server, and the FHIR endpoint it points to.

use serde_json::{json, Value};

/// The identifier system of the brand: the server's public URL as a URI.
pub const BRAND_IDENTIFIER_SYSTEM: &str = "urn:ietf:rfc:3986";

/// The Bundle: one Organization (the brand) and the Endpoint of the FHIR base.
pub fn brands_bundle(public_url: &str, fhir_base: &str, timestamp: &str) -> Value {
    json!({
        "resourceType": "Bundle",
        "id": "smartlaunch-brands",
        "meta": { "lastUpdated": timestamp },
        "type": "collection",
        "timestamp": timestamp,
        "entry": [
            {
                "fullUrl": format!("{public_url}/smart/Organization/smartlaunch"),
                "resource": {
                    "resourceType": "Organization",
                    "id": "smartlaunch",
                    "active": true,
                    "identifier": [{ "system": BRAND_IDENTIFIER_SYSTEM, "value": public_url }],
                    "name": "smartlaunch Sandbox Hospital",
                    "telecom": [{ "system": "url", "value": public_url }],
                    "endpoint": [{ "reference": format!("{public_url}/smart/Endpoint/smartlaunch-fhir") }]
                }
            },
            {
                "fullUrl": format!("{public_url}/smart/Endpoint/smartlaunch-fhir"),
                "resource": {
                    "resourceType": "Endpoint",
                    "id": "smartlaunch-fhir",
                    "status": "active",
                    "extension": [{
                        "url": "http://hl7.org/fhir/smart-app-launch/StructureDefinition/fhir-version",
                        "valueCode": crate::FHIR_VERSION
                    }],
                    "connectionType": {
                        "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                        "code": "hl7-fhir-rest"
                    },
                    "name": "smartlaunch FHIR R4 API",
                    "payloadType": [{ "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type",
                        "code": "none"
                    }] }],
                    "address": fhir_base
                }
            }
        ]
    })
}
