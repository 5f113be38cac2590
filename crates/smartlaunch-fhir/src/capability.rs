//! The server's R4 CapabilityStatement (`GET /fhir/metadata`), with the SMART security
//! service and the `oauth-uris` extension the Python SMART client discovers through, and the
//! Bulk Data export operations (Bulk Data IG v2.0.0, "Server Capability Documentation").

use serde_json::{json, Value};

use crate::export::{BULK_DATA_CAPABILITY, EXPORT_DEFINITION, GROUP_EXPORT_DEFINITION, PATIENT_EXPORT_DEFINITION};
use crate::resource_types::R4_RESOURCE_TYPES;
use crate::search::params::{params_of, Kind, SEARCHABLE_TYPES};

/// The OAuth endpoints announced in `rest[0].security`.
pub struct OAuthUris<'a> {
    pub authorize: &'a str,
    pub token: &'a str,
    pub register: &'a str,
    pub introspect: &'a str,
    pub revoke: &'a str,
    pub manage: &'a str,
}

/// The interactions every resource type supports today.
pub const INTERACTIONS: &[&str] =
    &["read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type"];

pub fn capability_statement(software_version: &str, fhir_base: &str, uris: &OAuthUris<'_>, date: &str) -> Value {
    let interactions: Vec<Value> = INTERACTIONS.iter().map(|i| json!({ "code": i })).collect();
    // Every `Source:param` reference parameter may be reverse-included from any type.
    let rev_includes: Vec<String> = SEARCHABLE_TYPES
        .iter()
        .flat_map(|source| {
            params_of(source).iter().filter(|p| p.kind == Kind::Reference).map(move |p| format!("{source}:{}", p.name))
        })
        .collect();
    let resources: Vec<Value> = R4_RESOURCE_TYPES
        .iter()
        .map(|ty| {
            let mut search_params =
                vec![json!({ "name": "_id", "type": "token" }), json!({ "name": "_lastUpdated", "type": "date" })];
            search_params.extend(params_of(ty).iter().map(|p| json!({ "name": p.name, "type": p.kind.as_str() })));
            let includes: Vec<String> = params_of(ty)
                .iter()
                .filter(|p| p.kind == Kind::Reference)
                .map(|p| format!("{ty}:{}", p.name))
                .collect();
            let operation = match *ty {
                "Patient" => json!([{ "name": "export", "definition": PATIENT_EXPORT_DEFINITION }]),
                "Group" => json!([{ "name": "export", "definition": GROUP_EXPORT_DEFINITION }]),
                _ => json!([]),
            };
            let mut resource = json!({
                "type": ty,
                "interaction": interactions,
                "searchParam": search_params,
                "searchInclude": includes,
                "searchRevInclude": rev_includes,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
            });
            if operation.as_array().is_some_and(|o| !o.is_empty()) {
                resource["operation"] = operation;
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "smartlaunch",
        "kind": "instance",
        "instantiates": [BULK_DATA_CAPABILITY],
        "software": { "name": "smartlaunch", "version": software_version },
        "implementation": { "description": "smartlaunch SMART on FHIR server", "url": fhir_base },
        "fhirVersion": crate::FHIR_VERSION,
        "format": ["json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Search: token (system|code, |code, code, system|), string (prefix, case- and accent-insensitive; :exact, :contains), date (eq ne gt lt ge le; partial dates are ranges), reference (Type/id, id), quantity, :missing; _count, _offset, _sort, _summary=count, _elements, _include and _revinclude (one level; only what the token may read is included); unknown parameters are ignored unless Prefer: handling=strict.",
            "security": {
                "cors": true,
                "service": [{
                    "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                        "display": "SMART-on-FHIR"
                    }],
                    "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"
                }],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [
                        { "url": "authorize", "valueUri": uris.authorize },
                        { "url": "token", "valueUri": uris.token },
                        { "url": "register", "valueUri": uris.register },
                        { "url": "introspect", "valueUri": uris.introspect },
                        { "url": "revoke", "valueUri": uris.revoke },
                        { "url": "manage", "valueUri": uris.manage }
                    ]
                }]
            },
            "resource": resources,
            "interaction": [{ "code": "transaction" }, { "code": "batch" }],
            "operation": [{ "name": "export", "definition": EXPORT_DEFINITION }]
        }]
    })
}
