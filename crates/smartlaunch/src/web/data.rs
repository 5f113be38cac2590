//! The EHR's read-only FHIR data browser (`/ehr/data`, issue 9 item 6): a signed-in clinician
//! searches a patient, sees how many resources of each type the patient's compartment holds,
//! lists them, and reads each resource's JSON as the FHIR API serves it — what an app with
//! access to this patient should see.  A patient user gets the EHR's wrong-desk page.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use smartlaunch_fhir::store::ResourceStore;

use crate::seed::display_name;
use crate::server::App;
use crate::web::ehr::{desk_user, Desk};
use crate::web::pages::{error_page, render};
use crate::web::views::{self, PatientRow};
use crate::web::{field, form_pairs};

/// Patients listed by a search; resources listed per type.
const PATIENTS: i64 = 25;
const RESOURCES: i64 = 200;

#[derive(Template)]
#[template(path = "data_search.html")]
struct SearchPage<'a> {
    title: &'a str,
    user_name: &'a str,
    csrf: &'a str,
    query: &'a str,
    patients: Vec<PatientRow>,
    total: i64,
}

/// One resource type of a compartment.
struct TypeCount {
    name: String,
    count: i64,
}

/// One listed resource.
struct Item {
    resource_type: String,
    id: String,
    summary: String,
    last_updated: String,
}

#[derive(Template)]
#[template(path = "data_patient.html")]
struct PatientPage<'a> {
    title: &'a str,
    user_name: &'a str,
    csrf: &'a str,
    patient: PatientRow,
    types: Vec<TypeCount>,
    /// The type listed, with its resources.
    listed: Option<(String, Vec<Item>)>,
    json: String,
}

#[derive(Template)]
#[template(path = "data_resource.html")]
struct ResourcePage<'a> {
    title: &'a str,
    user_name: &'a str,
    csrf: &'a str,
    resource_type: &'a str,
    id: &'a str,
    summary: String,
    /// The patient whose compartment holds it: (id, name).
    patient: Option<(String, String)>,
    json: String,
}

/// `GET /ehr/data?q=`: the patient search.
pub(crate) async fn search(State(app): State<App>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let (session, user) = match desk_user(&app, &headers, Desk::Ehr).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let query = form_pairs(query.unwrap_or_default().as_bytes());
    let q = field(&query, "q").unwrap_or_default().chars().take(100).collect::<String>();
    let (patients, total) = match app.db.search_patients(&q, 0, PATIENTS).await {
        Ok(found) => found,
        Err(e) => return failed("patient search", &e),
    };
    render(
        StatusCode::OK,
        &SearchPage {
            title: Desk::Ehr.title(),
            user_name: &user.display_name,
            csrf: &session.csrf,
            query: &q,
            patients: patients.iter().map(views::patient_row).collect(),
            total,
        },
    )
}

/// `GET /ehr/data/{type}/{id}`: a Patient's overview (its compartment by type, `?type=` lists
/// one type), or any other resource's JSON.
pub(crate) async fn resource(
    State(app): State<App>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let (session, user) = match desk_user(&app, &headers, Desk::Ehr).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let not_found = || error_page(StatusCode::NOT_FOUND, "No such resource", "There is no resource at this address.");
    if !smartlaunch_fhir::resource_types::is_resource_type(&resource_type) || !smartlaunch_fhir::is_valid_id(&id) {
        return not_found();
    }
    let stored = match app.db.read(&resource_type, &id).await {
        Ok(Some(stored)) if !stored.deleted => stored,
        Ok(_) => return not_found(),
        Err(e) => return failed("read", &e),
    };
    let Ok(value) = serde_json::from_str::<Value>(&stored.json) else {
        return not_found();
    };
    let json = serde_json::to_string_pretty(&value).unwrap_or_default();
    if resource_type != "Patient" {
        let patient = match smartlaunch_fhir::compartment::patient_of(&value) {
            Some(p) => {
                let name = views::patient_name(&app, Some(&p)).await.unwrap_or_else(|| p.clone());
                Some((p, name))
            }
            None => None,
        };
        let page = ResourcePage {
            title: Desk::Ehr.title(),
            user_name: &user.display_name,
            csrf: &session.csrf,
            resource_type: &resource_type,
            id: &id,
            summary: summary(&value),
            patient,
            json,
        };
        return render(StatusCode::OK, &page);
    }
    let query = form_pairs(query.unwrap_or_default().as_bytes());
    let counts = match app.db.compartment_counts(&id).await {
        Ok(counts) => counts,
        Err(e) => return failed("compartment", &e),
    };
    let types: Vec<TypeCount> =
        counts.into_iter().filter(|(t, _)| t != "Patient").map(|(name, count)| TypeCount { name, count }).collect();
    let chosen = field(&query, "type").and_then(|t| types.iter().find(|c| c.name == t)).map(|c| c.name.clone());
    let listed = match chosen {
        Some(t) => match app.db.compartment_resources(&id, &t, RESOURCES).await {
            Ok(rows) => Some((t, rows.iter().map(|r| item(&r.resource, &r.last_updated)).collect())),
            Err(e) => return failed("compartment", &e),
        },
        None => None,
    };
    let page = PatientPage {
        title: Desk::Ehr.title(),
        user_name: &user.display_name,
        csrf: &session.csrf,
        patient: views::patient_row(&value),
        types,
        listed,
        json,
    };
    render(StatusCode::OK, &page)
}

fn failed(what: &str, e: &impl std::fmt::Display) -> Response {
    tracing::error!("data browser: {what}: {e}");
    error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The data could not be read.")
}

fn item(resource: &Value, last_updated: &str) -> Item {
    Item {
        resource_type: resource["resourceType"].as_str().unwrap_or_default().to_owned(),
        id: resource["id"].as_str().unwrap_or_default().to_owned(),
        summary: summary(resource),
        last_updated: last_updated.chars().take(10).collect(),
    }
}

/// A few words that tell resources of one type apart: a code's text, a name, a type, a date.
fn summary(resource: &Value) -> String {
    let concept = |c: &Value| {
        c["text"].as_str().or(c["coding"][0]["display"].as_str()).or(c["coding"][0]["code"].as_str()).map(str::to_owned)
    };
    let what = concept(&resource["code"])
        .or_else(|| concept(&resource["medicationCodeableConcept"]))
        .or_else(|| concept(&resource["type"][0]))
        .or_else(|| display_name(resource))
        .unwrap_or_default();
    let when = ["effectiveDateTime", "onsetDateTime", "authoredOn", "recordedDate", "birthDate"]
        .iter()
        .find_map(|k| resource[*k].as_str())
        .or(resource["period"]["start"].as_str())
        .map(|d| d.chars().take(10).collect::<String>());
    match when {
        Some(when) if !what.is_empty() => format!("{what} · {when}"),
        Some(when) => when,
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::summary;
    use serde_json::json;

    #[test]
    fn summaries_name_the_code_and_the_date() {
        let obs = json!({"resourceType": "Observation", "code": {"text": "Heart rate"}, "effectiveDateTime": "2026-10-15T09:00:00Z"});
        assert_eq!(summary(&obs), "Heart rate · 2026-10-15");
        let enc = json!({"resourceType": "Encounter", "type": [{"coding": [{"display": "Check up"}]}], "period": {"start": "2026-01-02T09:00:00Z"}});
        assert_eq!(summary(&enc), "Check up · 2026-01-02");
        assert_eq!(summary(&json!({"resourceType": "Basic"})), "");
    }
}
