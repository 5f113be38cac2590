//! Plain summaries of FHIR resources for the server-rendered pages (pickers, the EHR chart,
//! the patient portal).

use serde_json::Value;
use smartlaunch_fhir::search::query;
use smartlaunch_fhir::search::Constraint;
use smartlaunch_fhir::store::ResourceStore;

use crate::seed::display_name;
use crate::server::App;

pub(crate) struct PatientRow {
    pub id: String,
    pub name: String,
    pub gender: String,
    pub birth_date: String,
    pub mrn: String,
}

pub(crate) struct EncounterRow {
    pub id: String,
    pub date: String,
    pub kind: String,
    pub class: String,
}

/// One line of a chart section: what, when, and a detail (status, value).
pub(crate) struct ChartRow {
    pub what: String,
    pub when: String,
    pub detail: String,
}

/// A patient's chart: the banner facts and the sections an EHR shows first.
pub(crate) struct Chart {
    pub patient: PatientRow,
    /// Whole years at `today`.
    pub age: Option<i64>,
    pub encounters: Vec<EncounterRow>,
    pub problems: Vec<ChartRow>,
    pub medications: Vec<ChartRow>,
    pub allergies: Vec<ChartRow>,
    pub vitals: Vec<ChartRow>,
    pub labs: Vec<ChartRow>,
}

pub(crate) async fn patient_name(app: &App, patient: Option<&str>) -> Option<String> {
    let stored = app.db.read("Patient", patient?).await.ok()??;
    let value: Value = serde_json::from_str(&stored.json).ok()?;
    display_name(&value)
}

pub(crate) fn patient_row(p: &Value) -> PatientRow {
    let mrn = p["identifier"]
        .as_array()
        .and_then(|ids| ids.iter().find(|i| i["type"]["text"] == "MRN").or(ids.first()))
        .and_then(|i| i["value"].as_str())
        .unwrap_or_default();
    PatientRow {
        id: p["id"].as_str().unwrap_or_default().to_owned(),
        name: display_name(p).unwrap_or_else(|| "(no name)".into()),
        gender: p["gender"].as_str().unwrap_or("unknown").to_owned(),
        birth_date: p["birthDate"].as_str().unwrap_or_default().to_owned(),
        mrn: mrn.to_owned(),
    }
}

pub(crate) fn encounter_row(e: &Value) -> EncounterRow {
    EncounterRow {
        id: e["id"].as_str().unwrap_or_default().to_owned(),
        date: e["period"]["start"].as_str().unwrap_or_default().chars().take(10).collect(),
        kind: e["type"][0]["text"]
            .as_str()
            .or(e["type"][0]["coding"][0]["display"].as_str())
            .unwrap_or("Encounter")
            .to_owned(),
        class: e["class"]["display"].as_str().or(e["class"]["code"].as_str()).unwrap_or_default().to_owned(),
    }
}

/// The text of a CodeableConcept: its `text`, else its first coding's display or code.
fn concept(c: &Value) -> String {
    c["text"]
        .as_str()
        .or(c["coding"][0]["display"].as_str())
        .or(c["coding"][0]["code"].as_str())
        .unwrap_or("—")
        .to_owned()
}

fn day(v: &Value) -> String {
    v.as_str().unwrap_or_default().chars().take(10).collect()
}

fn quantity(q: &Value) -> Option<String> {
    match (q["value"].as_f64()?, q["unit"].as_str()) {
        (v, Some(u)) => Some(format!("{v} {u}")),
        (v, None) => Some(v.to_string()),
    }
}

/// Who reads a chart, and so which names its observations get.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Labels {
    /// The EHR: the codes' own display names ("Body mass index (BMI) [Ratio]").
    Clinical,
    /// The patient portal: plain words ("Body mass index"), where the code is known.
    Friendly,
}

/// Plain names of the LOINC codes of the demo data and of common vital signs and labs.
const FRIENDLY_LOINC: &[(&str, &str)] = &[
    ("85354-9", "Blood pressure"),
    ("55284-4", "Blood pressure"),
    ("8480-6", "Systolic blood pressure"),
    ("8462-4", "Diastolic blood pressure"),
    ("8867-4", "Heart rate"),
    ("29463-7", "Weight"),
    ("8302-2", "Height"),
    ("8310-5", "Temperature"),
    ("39156-5", "Body mass index"),
    ("9279-1", "Breathing rate"),
    ("2708-6", "Oxygen level"),
    ("59408-5", "Oxygen level"),
    ("2339-0", "Blood sugar (glucose)"),
    ("2345-7", "Blood sugar (glucose)"),
    ("2093-3", "Cholesterol"),
    ("2085-9", "HDL (“good”) cholesterol"),
    ("18262-6", "LDL (“bad”) cholesterol"),
    ("2571-8", "Triglycerides"),
    ("2160-0", "Creatinine (kidney function)"),
    ("718-7", "Hemoglobin"),
    ("4548-4", "Average blood sugar (HbA1c)"),
];

/// The plain name of a LOINC-coded concept, if it has one.
fn friendly(code: &Value) -> Option<&'static str> {
    code["coding"].as_array()?.iter().filter(|c| c["system"] == "http://loinc.org").find_map(|c| {
        let code = c["code"].as_str()?;
        FRIENDLY_LOINC.iter().find(|(loinc, _)| *loinc == code).map(|(_, label)| *label)
    })
}

fn observation_row(o: &Value, labels: Labels) -> ChartRow {
    let components: Vec<&Value> = o["component"].as_array().into_iter().flatten().collect();
    let values: Vec<String> = components.iter().filter_map(|c| quantity(&c["valueQuantity"])).collect();
    let plain_panel = || -> Option<String> {
        // A patient reads blood pressure as "128/82 mmHg".
        let numbers: Vec<f64> = components.iter().filter_map(|c| c["valueQuantity"]["value"].as_f64()).collect();
        let unit = components.first()?["valueQuantity"]["unit"].as_str().unwrap_or_default();
        (numbers.len() == 2 && numbers.len() == components.len())
            .then(|| format!("{}/{} {unit}", numbers[0], numbers[1]).trim_end().to_owned())
    };
    // A panel such as blood pressure carries its values in components: "128 mmHg / 82 mmHg".
    let detail = quantity(&o["valueQuantity"])
        .or_else(|| if labels == Labels::Friendly { plain_panel() } else { None })
        .or_else(|| (!values.is_empty()).then(|| values.join(" / ")))
        .or_else(|| o["valueString"].as_str().map(str::to_owned))
        .unwrap_or_else(|| concept(&o["valueCodeableConcept"]));
    let what = match labels {
        Labels::Friendly => friendly(&o["code"]).map_or_else(|| concept(&o["code"]), str::to_owned),
        Labels::Clinical => concept(&o["code"]),
    };
    ChartRow { what, when: day(&o["effectiveDateTime"]), detail }
}

/// Whole years from `birth_date` (YYYY-MM-DD) to `today` (YYYY-MM-DD).
pub(crate) fn age(birth_date: &str, today: &str) -> Option<i64> {
    let parse = |d: &str| -> Option<(i64, i64, i64)> {
        let mut it = d.get(..10)?.split('-').map(|p| p.parse::<i64>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    };
    let (by, bm, bd) = parse(birth_date)?;
    let (ty, tm, td) = parse(today)?;
    Some(ty - by - i64::from((tm, td) < (bm, bd)))
}

/// The resources of one type in the patient's compartment, newest first.
async fn compartment(app: &App, resource_type: &str, patient: &str, sort: &str, count: usize) -> Vec<Value> {
    let pairs = [("_sort".to_owned(), sort.to_owned()), ("_count".to_owned(), count.to_string())];
    let Ok(request) = query::parse(resource_type, &pairs, false) else {
        return Vec::new();
    };
    let access = [Constraint { compartment: Some(patient.to_owned()), filter: Vec::new() }];
    match app.db.search(resource_type, &request, &access).await {
        Ok(page) => page.resources.iter().filter_map(|json| serde_json::from_str(json).ok()).collect(),
        Err(e) => {
            tracing::warn!("chart: {resource_type}: {e}");
            Vec::new()
        }
    }
}

/// The chart of a patient, or `None` when there is no such patient.
pub(crate) async fn chart(app: &App, patient_id: &str, today: &str, labels: Labels) -> Option<Chart> {
    let stored = app.db.read("Patient", patient_id).await.ok()??;
    if stored.deleted {
        return None;
    }
    let resource: Value = serde_json::from_str(&stored.json).ok()?;
    let patient = patient_row(&resource);
    let observations = compartment(app, "Observation", patient_id, "-date", 200).await;
    let of_category = |category: &str, limit: usize| -> Vec<ChartRow> {
        observations
            .iter()
            .filter(|o| o["category"][0]["coding"][0]["code"] == category)
            .take(limit)
            .map(|o| observation_row(o, labels))
            .collect()
    };
    let (vitals, labs) = (of_category("vital-signs", 8), of_category("laboratory", 8));
    let problems = compartment(app, "Condition", patient_id, "-_lastUpdated", 20)
        .await
        .iter()
        .map(|c| ChartRow {
            what: concept(&c["code"]),
            when: day(&c["onsetDateTime"]),
            detail: concept(&c["clinicalStatus"]),
        })
        .collect();
    let medications = compartment(app, "MedicationRequest", patient_id, "-_lastUpdated", 20)
        .await
        .iter()
        .map(|m| ChartRow {
            what: concept(&m["medicationCodeableConcept"]),
            when: day(&m["authoredOn"]),
            detail: m["status"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    let allergies = compartment(app, "AllergyIntolerance", patient_id, "-_lastUpdated", 20)
        .await
        .iter()
        .map(|a| ChartRow {
            what: concept(&a["code"]),
            when: day(&a["recordedDate"]),
            detail: a["criticality"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    let encounters = compartment(app, "Encounter", patient_id, "-date", 20).await.iter().map(encounter_row).collect();
    Some(Chart {
        age: age(&patient.birth_date, today),
        patient,
        encounters,
        problems,
        medications,
        allergies,
        vitals,
        labs,
    })
}

#[cfg(test)]
mod tests {
    use super::{age, observation_row, Labels};
    use serde_json::json;

    #[test]
    fn the_portal_names_observations_in_plain_words() {
        let bmi = json!({"code": {"coding": [{"system": "http://loinc.org", "code": "39156-5", "display": "Body mass index (BMI) [Ratio]"}]},
            "valueQuantity": {"value": 24.1, "unit": "kg/m2"}, "effectiveDateTime": "2026-10-15T09:00:00Z"});
        assert_eq!(observation_row(&bmi, Labels::Friendly).what, "Body mass index");
        assert_eq!(observation_row(&bmi, Labels::Clinical).what, "Body mass index (BMI) [Ratio]");
        let bp = json!({"code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel with all children optional"}]},
            "component": [{"valueQuantity": {"value": 128.0, "unit": "mmHg"}}, {"valueQuantity": {"value": 82.0, "unit": "mmHg"}}]});
        let row = observation_row(&bp, Labels::Friendly);
        assert_eq!((row.what.as_str(), row.detail.as_str()), ("Blood pressure", "128/82 mmHg"));
        assert_eq!(observation_row(&bp, Labels::Clinical).detail, "128 mmHg / 82 mmHg");
        let other =
            json!({"code": {"coding": [{"system": "http://example.org", "code": "39156-5", "display": "Local"}]}});
        assert_eq!(observation_row(&other, Labels::Friendly).what, "Local", "only LOINC codes are renamed");
    }

    #[test]
    fn age_counts_whole_years() {
        assert_eq!(age("1980-06-15", "2026-06-14"), Some(45));
        assert_eq!(age("1980-06-15", "2026-06-15"), Some(46));
        assert_eq!(age("", "2026-06-15"), None);
    }
}
