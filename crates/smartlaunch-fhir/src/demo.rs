//! The offline demo data set: deterministic, realistic R4 resources (24 patients with
//! encounters, vital signs and LOINC laboratory Observations, SNOMED CT Conditions, RxNorm
//! MedicationRequests and AllergyIntolerances; 4 Practitioners; a Group of every patient for
//! Bulk Data export).  No download, same output on every machine.

use serde_json::{json, Value};

mod vitals;

use vitals::{round, Body, ADULT_DAYS};
pub use vitals::{visit_with_vitals, Measured};

/// The demo data and the resources the demo accounts stand for.
pub struct DemoData {
    pub resources: Vec<Value>,
    /// `Practitioner/…` of the `clinician` account.
    pub clinician: String,
    /// `Patient/…` of the `patient` account (the patient with the richest record).
    pub patient: String,
}

pub const PATIENT_COUNT: usize = 24;

/// The id of the Group of every demo patient (a Group-level Bulk Data export's target).
pub const DEMO_GROUP: &str = "demo-patients";

/// The system of the demo hospital's medical record numbers.
pub const MRN_SYSTEM: &str = "http://hospital.smartlaunch.example/mrn";
const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const OBS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

const GIVEN_F: &[&str] =
    &["Amy", "Maria", "Grace", "Olivia", "Sofia", "Hannah", "Leila", "Chloe", "Nora", "Ruth", "Yuki", "Amara"];
const GIVEN_M: &[&str] =
    &["Daniel", "Samuel", "Omar", "Lucas", "Ethan", "Kenji", "Mateo", "Isaac", "Tomas", "Arjun", "Felix", "Kwame"];
const FAMILY: &[&str] = &[
    "Shaw",
    "Garcia",
    "Nguyen",
    "Okafor",
    "Kowalski",
    "Haddad",
    "Lindqvist",
    "Moreau",
    "Patel",
    "Fischer",
    "Rossi",
    "Tanaka",
    "Mensah",
    "O'Brien",
    "Silva",
    "Novak",
    "Cohen",
    "Ibrahim",
    "Jensen",
    "Walker",
    "Kim",
    "Alvarez",
    "Dubois",
    "Wright",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Boston", "MA", "02118"),
    ("Springfield", "MA", "01103"),
    ("Worcester", "MA", "01608"),
    ("Cambridge", "MA", "02139"),
    ("Lowell", "MA", "01852"),
];

/// (SNOMED code, display, RxNorm code, medication display)
const PROBLEMS: &[(&str, &str, &str, &str)] = &[
    ("38341003", "Hypertensive disorder, systemic arterial", "314076", "lisinopril 10 MG Oral Tablet"),
    (
        "44054006",
        "Diabetes mellitus type 2",
        "860975",
        "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
    ),
    ("55822004", "Hyperlipidemia", "617310", "atorvastatin 20 MG Oral Tablet"),
    ("195967001", "Asthma", "745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
    ("40930008", "Hypothyroidism", "966224", "levothyroxine sodium 0.05 MG Oral Tablet"),
    ("235595009", "Gastroesophageal reflux disease", "198053", "omeprazole 20 MG Delayed Release Oral Capsule"),
    ("37796009", "Migraine", "313782", "sumatriptan 50 MG Oral Tablet"),
    ("239873007", "Osteoarthritis of knee", "198013", "naproxen 250 MG Oral Tablet"),
];

/// (SNOMED code, display, category, criticality)
const ALLERGENS: &[(&str, &str, &str, &str)] = &[
    ("764146007", "Penicillin", "medication", "high"),
    ("256349002", "Peanut", "food", "high"),
    ("111088007", "Latex", "environment", "low"),
    ("44027008", "Seafood", "food", "low"),
    ("387406002", "Sulfonamide", "medication", "low"),
];

/// (SNOMED code, display) of encounter types.
const VISITS: &[(&str, &str)] = &[
    ("185349003", "Encounter for check up"),
    ("390906007", "Follow-up encounter"),
    ("185345009", "Encounter for symptom"),
    ("702927004", "Urgent care clinic"),
];

const PRACTITIONERS: &[(&str, &str, &str)] =
    &[("Susan", "Clark", "female"), ("Rafael", "Ortiz", "male"), ("Mei", "Chen", "female"), ("Jonas", "Berg", "male")];

/// A small deterministic generator (64-bit LCG) so the data set never changes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A value in `[lo, hi)` rounded to `decimals`.
    fn range(&mut self, lo: f64, hi: f64, decimals: i32) -> f64 {
        round(lo + (hi - lo) * (self.next() % 10_000) as f64 / 10_000.0, decimals)
    }
}

/// The civil date `days` days after 1970-01-01, as `YYYY-MM-DD` (Howard Hinnant's algorithm).
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days from 1970-01-01 to 2026-10-15, the data set's "today".
const TODAY: i64 = 20_741;

pub fn generate() -> DemoData {
    let mut resources = Vec::new();
    for (i, (given, family, gender)) in PRACTITIONERS.iter().enumerate() {
        resources.push(json!({
            "resourceType": "Practitioner",
            "id": practitioner_id(i),
            "active": true,
            "identifier": [{ "system": "http://hl7.org/fhir/sid/us-npi", "value": format!("19{:08}", 4_410_021 + i * 7_919) }],
            "name": [{ "use": "official", "family": family, "given": [given], "prefix": ["Dr."] }],
            "gender": gender,
            "telecom": [{ "system": "email", "value": format!("{}.{}@hospital.smartlaunch.example", given.to_lowercase(), family.to_lowercase()) }],
            "qualification": [{ "code": { "text": "MD" } }]
        }));
    }
    for i in 0..PATIENT_COUNT {
        patient_record(i, None, &mut resources);
    }
    resources.push(group(DEMO_GROUP, "All demo patients", PATIENT_COUNT));
    DemoData {
        resources,
        clinician: format!("Practitioner/{}", practitioner_id(0)),
        patient: format!("Patient/{}", patient_id(0)),
    }
}

/// An actual `person` Group of the first `patients` patients.
pub fn group(id: &str, name: &str, patients: usize) -> Value {
    let member: Vec<Value> =
        (0..patients).map(|i| json!({ "entity": { "reference": format!("Patient/{}", patient_id(i)) } })).collect();
    json!({
        "resourceType": "Group",
        "id": id,
        "type": "person",
        "actual": true,
        "name": name,
        "quantity": patients,
        "member": member
    })
}

fn practitioner_id(i: usize) -> String {
    format!("pract-{:03}", i + 1)
}

fn patient_id(i: usize) -> String {
    format!("pat-{:03}", i + 1)
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code, "display": display }], "text": display })
}

/// A larger data set for benchmarks: the Practitioners and `patients` patients with
/// `encounters` encounters each, every encounter with vital signs and laboratory results
/// (about 11 resources per encounter).
pub fn generate_scaled(patients: usize, encounters: i64) -> Vec<Value> {
    let mut resources =
        generate().resources.into_iter().filter(|r| r["resourceType"] == "Practitioner").collect::<Vec<_>>();
    for i in 0..patients {
        patient_record(i, Some(encounters), &mut resources);
    }
    resources
}

fn patient_record(i: usize, encounters: Option<i64>, out: &mut Vec<Value>) {
    let mut rng = Lcg(0x5eed_0000 + i as u64 * 7_777);
    let pid = patient_id(i);
    let female = i.is_multiple_of(2);
    let given = if female { GIVEN_F[(i / 2) % GIVEN_F.len()] } else { GIVEN_M[(i / 2) % GIVEN_M.len()] };
    let family = FAMILY[i % FAMILY.len()];
    // Adults of 18 to 88 (Amy Shaw, the richest record, is 62).
    let birth = if i == 0 { -2_200 } else { TODAY - ADULT_DAYS - rng.below(70 * 365) as i64 };
    let (city, state, zip) = CITIES[i % CITIES.len()];
    let gp = practitioner_id(i % PRACTITIONERS.len());
    out.push(json!({
        "resourceType": "Patient",
        "id": pid,
        "active": true,
        "identifier": [{
            "use": "usual",
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR", "display": "Medical record number" }], "text": "MRN" },
            "system": MRN_SYSTEM,
            "value": format!("{}", 100_001 + i * 37)
        }],
        "name": [{ "use": "official", "family": family, "given": [given] }],
        "gender": if female { "female" } else { "male" },
        "birthDate": civil_date(birth),
        "telecom": [{ "system": "phone", "value": format!("555-01{:02}", i), "use": "home" }],
        "address": [{ "use": "home", "line": [format!("{} Main Street", 10 + i * 3)], "city": city, "state": state, "postalCode": zip, "country": "US" }],
        "generalPractitioner": [{ "reference": format!("Practitioner/{gp}") }]
    }));

    let rich = i == 0;
    let problems: Vec<usize> = if rich {
        vec![0, 1, 2, 3]
    } else {
        let n = 1 + rng.below(3) as usize;
        let mut v: Vec<usize> = (0..n).map(|_| rng.below(PROBLEMS.len() as u64) as usize).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let encounter_count = encounters.unwrap_or(if rich { 6 } else { 2 + rng.below(3) as i64 });
    let subject = json!({ "reference": format!("Patient/{pid}"), "display": format!("{given} {family}") });
    let diabetic = problems.contains(&1);
    let body = Body::of(i, female, problems.contains(&0));

    for e in 0..encounter_count {
        let day = TODAY - e * 75 - rng.below(20) as i64 - i as i64;
        let date = civil_date(day);
        let eid = format!("enc-{:03}-{}", i + 1, e + 1);
        let start = format!("{date}T09:{:02}:00Z", 10 + rng.below(40));
        let end = format!("{date}T09:{:02}:00Z", 50 + rng.below(9));
        out.push(json!({
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory" },
            "type": [coding(SNOMED, VISITS[(e as usize + i) % VISITS.len()].0, VISITS[(e as usize + i) % VISITS.len()].1)],
            "subject": subject,
            "participant": [{ "individual": { "reference": format!("Practitioner/{gp}") } }],
            "period": { "start": start, "end": end },
            "serviceProvider": { "display": "smartlaunch General Hospital" }
        }));
        let ctx = Ctx { eid: &eid, subject: &subject, when: &start };
        let mut n = 0;
        let mut obs = |o: Value| {
            n += 1;
            let mut o = o;
            o["id"] = json!(format!("obs-{:03}-{}-{}", i + 1, e + 1, n));
            out.push(o);
        };
        let v = body.on(day, &mut rng);
        obs(ctx.blood_pressure(v.systolic, v.diastolic));
        obs(ctx.vital("8867-4", "Heart rate", v.heart_rate, "/min", "beats/minute"));
        obs(ctx.vital("29463-7", "Body weight", v.weight, "kg", "kg"));
        obs(ctx.vital("8302-2", "Body height", body.height, "cm", "cm"));
        obs(ctx.vital("8310-5", "Body temperature", v.temperature, "Cel", "°C"));
        obs(ctx.vital("39156-5", "Body mass index (BMI) [Ratio]", v.bmi, "kg/m2", "kg/m2"));
        obs(ctx.vital("9279-1", "Respiratory rate", v.respiratory_rate, "/min", "breaths/minute"));
        if rich || e % 2 == 0 || encounters.is_some() {
            let glucose = if diabetic { rng.range(120.0, 190.0, 0) } else { rng.range(72.0, 105.0, 0) };
            obs(ctx.lab("2339-0", "Glucose [Mass/volume] in Blood", glucose, "mg/dL", (70.0, 99.0)));
            obs(ctx.lab(
                "2093-3",
                "Cholesterol [Mass/volume] in Serum or Plasma",
                rng.range(150.0, 250.0, 0),
                "mg/dL",
                (0.0, 200.0),
            ));
            obs(ctx.lab(
                "2160-0",
                "Creatinine [Mass/volume] in Serum or Plasma",
                rng.range(0.6, 1.3, 2),
                "mg/dL",
                (0.6, 1.2),
            ));
            obs(ctx.lab("718-7", "Hemoglobin [Mass/volume] in Blood", rng.range(11.5, 16.5, 1), "g/dL", (12.0, 17.5)));
            if diabetic {
                obs(ctx.lab(
                    "4548-4",
                    "Hemoglobin A1c/Hemoglobin.total in Blood",
                    rng.range(6.2, 8.9, 1),
                    "%",
                    (4.0, 5.6),
                ));
            }
        }
    }

    for (k, &p) in problems.iter().enumerate() {
        let (code, display, rx, med) = PROBLEMS[p];
        let onset = civil_date(TODAY - 400 - rng.below(3_000) as i64);
        out.push(json!({
            "resourceType": "Condition",
            "id": format!("cond-{:03}-{}", i + 1, k + 1),
            "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
            "verificationStatus": coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
            "category": [coding("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item")],
            "code": coding(SNOMED, code, display),
            "subject": subject,
            "onsetDateTime": onset,
            "recordedDate": onset
        }));
        out.push(json!({
            "resourceType": "MedicationRequest",
            "id": format!("medrx-{:03}-{}", i + 1, k + 1),
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": coding(RXNORM, rx, med),
            "subject": subject,
            "authoredOn": onset,
            "requester": { "reference": format!("Practitioner/{gp}") },
            "reasonCode": [coding(SNOMED, code, display)],
            "dosageInstruction": [{ "text": "As directed" }]
        }));
    }

    let allergies: Vec<usize> = if rich {
        vec![0, 1]
    } else if rng.below(3) == 0 {
        vec![]
    } else {
        vec![rng.below(ALLERGENS.len() as u64) as usize]
    };
    if allergies.is_empty() {
        out.push(json!({
            "resourceType": "AllergyIntolerance",
            "id": format!("allergy-{:03}-1", i + 1),
            "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
            "verificationStatus": coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"),
            "code": coding(SNOMED, "716186003", "No known allergy"),
            "patient": { "reference": format!("Patient/{pid}") }
        }));
    }
    for (k, &a) in allergies.iter().enumerate() {
        let (code, display, category, criticality) = ALLERGENS[a];
        out.push(json!({
            "resourceType": "AllergyIntolerance",
            "id": format!("allergy-{:03}-{}", i + 1, k + 1),
            "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
            "verificationStatus": coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"),
            "type": "allergy",
            "category": [category],
            "criticality": criticality,
            "code": coding(SNOMED, code, display),
            "patient": { "reference": format!("Patient/{pid}") },
            "recordedDate": civil_date(TODAY - 900 - 30 * k as i64)
        }));
    }
}

/// What every Observation of one encounter shares.
struct Ctx<'a> {
    eid: &'a str,
    subject: &'a Value,
    when: &'a str,
}

impl Ctx<'_> {
    fn base(&self, category: &str, category_display: &str, code: Value) -> Value {
        json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{ "coding": [{ "system": OBS_CATEGORY, "code": category, "display": category_display }] }],
            "code": code,
            "subject": self.subject,
            "encounter": { "reference": format!("Encounter/{}", self.eid) },
            "effectiveDateTime": self.when,
            "issued": self.when
        })
    }

    fn quantity(value: f64, ucum: &str, unit: &str) -> Value {
        json!({ "value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": ucum })
    }

    fn vital(&self, loinc: &str, display: &str, value: f64, ucum: &str, unit: &str) -> Value {
        let mut o = self.base("vital-signs", "Vital Signs", coding(LOINC, loinc, display));
        o["valueQuantity"] = Self::quantity(value, ucum, unit);
        o
    }

    fn blood_pressure(&self, systolic: f64, diastolic: f64) -> Value {
        let mut o = self.base(
            "vital-signs",
            "Vital Signs",
            coding(LOINC, "85354-9", "Blood pressure panel with all children optional"),
        );
        o["component"] = json!([
            { "code": coding(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": Self::quantity(systolic, "mm[Hg]", "mmHg") },
            { "code": coding(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": Self::quantity(diastolic, "mm[Hg]", "mmHg") }
        ]);
        o
    }

    fn lab(&self, loinc: &str, display: &str, value: f64, unit: &str, (low, high): (f64, f64)) -> Value {
        let mut o = self.base("laboratory", "Laboratory", coding(LOINC, loinc, display));
        o["valueQuantity"] = Self::quantity(value, unit, unit);
        let flag = if value > high {
            Some(("H", "High"))
        } else if value < low {
            Some(("L", "Low"))
        } else {
            None
        };
        if let Some((code, disp)) = flag {
            o["interpretation"] =
                json!([coding("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", code, disp)]);
        }
        o["referenceRange"] =
            json!([{ "low": Self::quantity(low, unit, unit), "high": Self::quantity(high, unit, unit) }]);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(TODAY), "2026-10-15");
        assert_eq!(civil_date(-1), "1969-12-31");
        assert_eq!(civil_date(11_016), "2000-02-29");
    }

    #[test]
    fn the_data_set_is_deterministic_and_complete() {
        let a = generate();
        let b = generate();
        assert_eq!(a.resources, b.resources);
        let count = |t: &str| a.resources.iter().filter(|r| r["resourceType"] == t).count();
        assert_eq!(count("Patient"), PATIENT_COUNT);
        assert!(count("Practitioner") >= 3);
        for t in ["Encounter", "Observation", "Condition", "MedicationRequest", "AllergyIntolerance"] {
            assert!(count(t) >= PATIENT_COUNT, "{t}");
        }
        let ids: HashSet<String> = a.resources.iter().map(|r| format!("{}/{}", r["resourceType"], r["id"])).collect();
        assert_eq!(ids.len(), a.resources.len(), "ids are unique");
        assert!(a.resources.iter().all(|r| crate::is_valid_id(r["id"].as_str().unwrap())));
        let labs = a.resources.iter().filter(|r| r["category"][0]["coding"][0]["code"] == "laboratory").count();
        assert!(labs > 50);
    }

    #[test]
    fn the_scaled_set_has_about_two_hundred_resources_per_patient() {
        let set = generate_scaled(3, 18);
        let per_patient = (set.len() - PRACTITIONERS.len()) / 3;
        assert!((180..=230).contains(&per_patient), "{per_patient}");
    }

    #[test]
    fn every_patient_has_each_kind_of_record() {
        let data = generate();
        for i in 0..PATIENT_COUNT {
            let reference = format!("Patient/{}", patient_id(i));
            for t in ["Encounter", "Observation", "Condition", "MedicationRequest", "AllergyIntolerance"] {
                assert!(
                    data.resources.iter().any(|r| r["resourceType"] == t
                        && crate::compartment::patient_of(r).map(|p| format!("Patient/{p}"))
                            == Some(reference.clone())),
                    "{reference} has no {t}"
                );
            }
        }
    }
}
