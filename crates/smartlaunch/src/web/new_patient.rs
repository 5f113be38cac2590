//! The EHR's "new patient" form (`/ehr/patients/new`, issue 9 item 6): a clinician adds a
//! patient with a few vital signs measured today.  Every field is checked against a plausible
//! range with a message that names it; the Patient, today's Encounter and the Observations
//! (coded and shaped like the demo data's, `smartlaunch_fhir::demo::visit_with_vitals`) are
//! written in one transaction, then the new chart opens.  CSRF: the session's token.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use smartlaunch_auth::secrets::{random_hex, secrets_equal};
use smartlaunch_auth::store::Session;
use smartlaunch_auth::users::User;
use smartlaunch_fhir::demo::{visit_with_vitals, Measured};
use smartlaunch_fhir::store::{Expected, ResourceStore, WriteOp};

use crate::server::{instant, App};
use crate::web::ehr::{desk_user, Desk};
use crate::web::pages::{error_page, render};
use crate::web::{field, form_pairs, see_other};

/// The longest name part accepted.
const MAX_NAME: usize = 100;

#[derive(Template)]
#[template(path = "new_patient.html")]
struct NewPatientPage<'a> {
    title: &'a str,
    user_name: &'a str,
    csrf: &'a str,
    errors: Vec<String>,
    /// What was posted, to fill the form again.
    filled: Vec<(String, String)>,
    today: String,
}

impl NewPatientPage<'_> {
    fn value(&self, name: &str) -> &str {
        field(&self.filled, name).unwrap_or_default()
    }
}

const GENDERS: [&str; 4] = ["female", "male", "other", "unknown"];

/// A checked form: the Patient's fields and the measurements.
#[derive(Debug, PartialEq)]
struct NewPatient {
    given: String,
    family: String,
    gender: &'static str,
    birth_date: String,
    measured: Measured,
}

fn page(
    status: StatusCode,
    session: &Session,
    user: &User,
    today: &str,
    errors: Vec<String>,
    form: &[(String, String)],
) -> Response {
    let filled = form.iter().filter(|(k, _)| k != "csrf").cloned().collect();
    let body = NewPatientPage {
        title: Desk::Ehr.title(),
        user_name: &user.display_name,
        csrf: &session.csrf,
        errors,
        filled,
        today: today.to_owned(),
    };
    render(status, &body)
}

fn today(app: &App) -> String {
    instant(app.clock.now()).chars().take(10).collect()
}

/// `GET /ehr/patients/new`.
pub(crate) async fn show(State(app): State<App>, headers: HeaderMap) -> Response {
    match desk_user(&app, &headers, Desk::Ehr).await {
        Ok((session, user)) => page(StatusCode::OK, &session, &user, &today(&app), Vec::new(), &[]),
        Err(page) => page,
    }
}

/// `POST /ehr/patients/new`: checks the form, writes everything in one transaction, and opens
/// the new chart.
pub(crate) async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, user) = match desk_user(&app, &headers, Desk::Ehr).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let form = form_pairs(&body);
    if !secrets_equal(&session.csrf, field(&form, "csrf").unwrap_or_default()) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The form has expired",
            "Please reload the form and try again. Nothing was saved.",
        );
    }
    let today = today(&app);
    let new = match check(&form, &today) {
        Ok(new) => new,
        Err(errors) => return page(StatusCode::BAD_REQUEST, &session, &user, &today, errors, &form),
    };
    let number = random_hex(6);
    let id = format!("pat-{number}");
    let mut patient = json!({
        "resourceType": "Patient",
        "id": id,
        "active": true,
        "identifier": [{
            "use": "usual",
            "type": { "text": "MRN" },
            "system": smartlaunch_fhir::demo::MRN_SYSTEM,
            "value": format!("N-{number}")
        }],
        "name": [{ "use": "official", "family": new.family, "given": [new.given] }],
        "gender": new.gender,
        "birthDate": new.birth_date,
    });
    if user.fhir_user.starts_with("Practitioner/") {
        patient["generalPractitioner"] = json!([{ "reference": user.fhir_user }]);
    }
    let now = instant(app.clock.now());
    let mut resources: Vec<Value> = vec![patient.clone()];
    if new.measured != Measured::default() {
        resources.extend(visit_with_vitals(&patient, &format!("enc-{}", random_hex(6)), &now, new.measured));
    }
    let ops: Vec<WriteOp> =
        resources.into_iter().map(|resource| WriteOp::Put { resource, expected: Expected::Absent }).collect();
    match app.db.transaction(&ops, &now).await {
        Ok(_) => see_other(&format!("/ehr/patients/{id}")),
        Err((_, e)) => {
            tracing::error!("new patient: {e}");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The patient could not be saved.")
        }
    }
}

/// A number field in `range`, or the message that says what is wrong.  Empty: `None`.
fn number(
    form: &[(String, String)],
    name: &str,
    label: &str,
    (lo, hi): (f64, f64),
    unit: &str,
    errors: &mut Vec<String>,
) -> Option<f64> {
    let text = field(form, name).unwrap_or_default().trim();
    if text.is_empty() {
        return None;
    }
    match text.replace(',', ".").parse::<f64>() {
        Ok(v) if v.is_finite() && (lo..=hi).contains(&v) => Some((v * 10.0).round() / 10.0),
        Ok(_) => {
            errors.push(format!("{label} must be between {lo} and {hi} {unit}."));
            None
        }
        Err(_) => {
            errors.push(format!("{label} must be a number (in {unit})."));
            None
        }
    }
}

/// Checks every field; all the problems at once.
fn check(form: &[(String, String)], today: &str) -> Result<NewPatient, Vec<String>> {
    let mut errors = Vec::new();
    let mut name = |key: &str, label: &str| {
        let value = field(form, key).unwrap_or_default().trim().to_owned();
        if value.is_empty() {
            errors.push(format!("{label} is required."));
        } else if value.chars().count() > MAX_NAME || value.chars().any(char::is_control) {
            errors.push(format!("{label} must be at most {MAX_NAME} characters, on one line."));
        }
        value
    };
    let given = name("given", "The given name");
    let family = name("family", "The family name");
    let gender = GENDERS.iter().copied().find(|g| Some(*g) == field(form, "gender"));
    if gender.is_none() {
        errors.push("Choose a gender.".into());
    }
    let birth_date = field(form, "birth_date").unwrap_or_default().trim().to_owned();
    let earliest = "1900-01-01";
    if !is_date(&birth_date) {
        errors.push("The birth date must be a date (YYYY-MM-DD).".into());
    } else if birth_date.as_str() > today || birth_date.as_str() < earliest {
        errors.push(format!("The birth date must be between {earliest} and today ({today})."));
    }
    let height_cm = number(form, "height", "Height", (40.0, 250.0), "cm", &mut errors);
    let weight_kg = number(form, "weight", "Weight", (2.0, 300.0), "kg", &mut errors);
    let systolic = number(form, "systolic", "Systolic blood pressure", (60.0, 250.0), "mmHg", &mut errors);
    let diastolic = number(form, "diastolic", "Diastolic blood pressure", (30.0, 150.0), "mmHg", &mut errors);
    let blood_pressure = match (systolic, diastolic) {
        (Some(s), Some(d)) if s > d => Some((s, d)),
        (Some(_), Some(_)) => {
            errors.push("The systolic blood pressure must be higher than the diastolic.".into());
            None
        }
        (None, None) => None,
        _ => {
            errors.push("Give both blood pressure values, systolic and diastolic, or neither.".into());
            None
        }
    };
    match gender {
        Some(gender) if errors.is_empty() => Ok(NewPatient {
            given,
            family,
            gender,
            birth_date,
            measured: Measured { height_cm, weight_kg, blood_pressure },
        }),
        _ => Err(errors),
    }
}

/// Whether `s` is a real calendar date `YYYY-MM-DD`.
fn is_date(s: &str) -> bool {
    let digits = |range: std::ops::Range<usize>| {
        s.get(range).filter(|p| p.bytes().all(|b| b.is_ascii_digit())).and_then(|p| p.parse::<usize>().ok())
    };
    let shape = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else { return false };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    shape && (1..=12).contains(&m) && d >= 1 && d <= days[m - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const VALID: &[(&str, &str)] = &[
        ("given", "Ada"),
        ("family", "Lovelace"),
        ("gender", "female"),
        ("birth_date", "1980-12-10"),
        ("height", "165"),
        ("weight", "61.5"),
        ("systolic", "118"),
        ("diastolic", "76"),
    ];

    #[test]
    fn a_valid_form_is_accepted() {
        let new = check(&form(VALID), "2026-10-15").unwrap();
        assert_eq!(new.measured.blood_pressure, Some((118.0, 76.0)));
        assert_eq!(new.measured.weight_kg, Some(61.5));
        let minimal = check(&form(&VALID[..4]), "2026-10-15").unwrap();
        assert_eq!(minimal.measured, Measured::default());
    }

    #[test]
    fn each_mistake_is_named() {
        let with = |key: &str, value: &str| {
            let mut f = form(VALID);
            f.retain(|(k, _)| k != key);
            f.push((key.into(), value.into()));
            check(&f, "2026-10-15").unwrap_err().join(" ")
        };
        assert!(with("height", "500").contains("Height must be between 40 and 250 cm"));
        assert!(with("weight", "heavy").contains("Weight must be a number"));
        assert!(with("systolic", "70").contains("higher than the diastolic"));
        assert!(with("diastolic", "").contains("or neither"));
        assert!(with("birth_date", "2027-01-01").contains("between 1900-01-01 and today"));
        assert!(with("birth_date", "2023-02-30").contains("must be a date"));
        assert!(with("gender", "robot").contains("Choose a gender"));
        assert!(with("given", " ").contains("The given name is required"));
        assert!(with("family", &"x".repeat(101)).contains("at most 100"));
    }

    #[test]
    fn dates_are_real_calendar_dates() {
        assert!(is_date("2024-02-29") && is_date("1900-01-01") && is_date("1969-12-31"));
        assert!(!is_date("2023-02-29") && !is_date("2023-13-01") && !is_date("1980-1-1") && !is_date("x"));
    }
}
