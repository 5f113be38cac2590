//! The demo patients' vital signs (issue 9): a fixed adult height, a weight that drifts slowly,
//! the BMI of the same day's weight and height, blood pressure and heart rate around each
//! patient's own baselines; and the vital signs of a patient added by hand.  The seed test
//! checks them all.

use serde_json::{json, Value};

use super::{coding, Ctx, Lcg, SNOMED, TODAY, VISITS};

/// Vital signs measured for a patient added by hand (the sandbox's "new patient" form).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measured {
    pub height_cm: Option<f64>,
    pub weight_kg: Option<f64>,
    /// (systolic, diastolic) in mmHg.
    pub blood_pressure: Option<(f64, f64)>,
}

/// An ambulatory Encounter of `patient` at `when` (a FHIR instant) with the `measured` vital
/// signs as Observations shaped and coded like the demo data's (and a BMI when both weight and
/// height are given).  Ids are `encounter_id` and `{encounter_id}-{n}`.
pub fn visit_with_vitals(patient: &Value, encounter_id: &str, when: &str, measured: Measured) -> Vec<Value> {
    let pid = patient["id"].as_str().unwrap_or_default();
    let subject = json!({ "reference": format!("Patient/{pid}") });
    let (code, display) = VISITS[0];
    let mut out = vec![json!({
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished",
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory" },
        "type": [coding(SNOMED, code, display)],
        "subject": subject,
        "period": { "start": when, "end": when },
        "serviceProvider": { "display": "smartlaunch General Hospital" }
    })];
    let ctx = Ctx { eid: encounter_id, subject: &subject, when };
    let mut observations = Vec::new();
    if let Some((systolic, diastolic)) = measured.blood_pressure {
        observations.push(ctx.blood_pressure(systolic, diastolic));
    }
    if let Some(weight) = measured.weight_kg {
        observations.push(ctx.vital("29463-7", "Body weight", weight, "kg", "kg"));
    }
    if let Some(height) = measured.height_cm {
        observations.push(ctx.vital("8302-2", "Body height", height, "cm", "cm"));
    }
    if let (Some(weight), Some(height)) = (measured.weight_kg, measured.height_cm) {
        let bmi = round(weight / (height / 100.0).powi(2), 1);
        observations.push(ctx.vital("39156-5", "Body mass index (BMI) [Ratio]", bmi, "kg/m2", "kg/m2"));
    }
    for (n, mut o) in observations.into_iter().enumerate() {
        o["id"] = json!(format!("{encounter_id}-{}", n + 1));
        out.push(o);
    }
    out
}

/// Days in 18 years: the youngest demo patient's age.
pub(super) const ADULT_DAYS: i64 = 18 * 365;

/// One adult's body: a fixed height and the baselines the vital signs of every encounter vary
/// around, so that they are plausible and consistent over time.  Drawn from a generator of its
/// own (the patient's other records keep their values).
pub(super) struct Body {
    pub(super) height: f64,
    /// Weight today (kg) and its slow drift (kg per day, at most 0.05 kg a week either way).
    weight: f64,
    drift: f64,
    systolic: f64,
    diastolic: f64,
    heart_rate: f64,
}

/// The vital signs of one encounter.
pub(super) struct Vitals {
    pub(super) systolic: f64,
    pub(super) diastolic: f64,
    pub(super) heart_rate: f64,
    pub(super) weight: f64,
    pub(super) bmi: f64,
    pub(super) temperature: f64,
    pub(super) respiratory_rate: f64,
}

/// The lowest and highest body mass index of the demo patients.
const BMI_RANGE: (f64, f64) = (18.5, 36.0);

impl Body {
    pub(super) fn of(i: usize, female: bool, hypertensive: bool) -> Body {
        let mut rng = Lcg(0xb0d1_0000 + i as u64 * 104_729);
        let height = if female { rng.range(152.0, 176.0, 1) } else { rng.range(164.0, 191.0, 1) };
        let bmi = rng.range(20.0, 32.0, 1);
        let raised = if hypertensive { 1.0 } else { 0.0 };
        let systolic = rng.range(108.0, 128.0, 0) + 14.0 * raised;
        // At least 30 mmHg below the systolic: with the day-to-day variation, 20 at the least.
        let diastolic = (rng.range(66.0, 82.0, 0) + 8.0 * raised).min(systolic - 30.0);
        Body {
            height,
            weight: bmi * (height / 100.0).powi(2),
            drift: rng.range(-0.05, 0.05, 3) / 7.0,
            systolic,
            diastolic,
            heart_rate: rng.range(60.0, 84.0, 0),
        }
    }

    /// The vital signs measured on `day`; `rng` gives the day-to-day variation.
    pub(super) fn on(&self, day: i64, rng: &mut Lcg) -> Vitals {
        let m2 = (self.height / 100.0).powi(2);
        let drifted = self.weight + self.drift * (day - TODAY) as f64 + rng.range(-0.4, 0.4, 1);
        let weight = round(drifted.clamp(BMI_RANGE.0 * m2, BMI_RANGE.1 * m2), 1);
        Vitals {
            systolic: self.systolic + rng.range(-6.0, 6.0, 0),
            diastolic: self.diastolic + rng.range(-4.0, 4.0, 0),
            heart_rate: self.heart_rate + rng.range(-6.0, 6.0, 0),
            weight,
            bmi: round(weight / m2, 1),
            temperature: rng.range(36.3, 37.4, 1),
            respiratory_rate: rng.range(12.0, 19.0, 0),
        }
    }
}

pub(super) fn round(x: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (x * p).round() / p
}

#[cfg(test)]
mod tests {
    use super::super::{civil_date, generate, generate_scaled};
    use super::*;

    /// One encounter's vital signs, as the seed stores them.
    #[derive(Default, Debug)]
    struct Seen {
        day: i64,
        height: f64,
        weight: f64,
        bmi: f64,
        systolic: f64,
        diastolic: f64,
        heart_rate: f64,
        temperature: f64,
        respiratory_rate: f64,
    }

    /// The inverse of [`civil_date`] (Howard Hinnant's `days_from_civil`).
    fn days(date: &str) -> i64 {
        let mut parts = date[..10].split('-').map(|p| p.parse::<i64>().unwrap());
        let (y, m, d) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        assert_eq!(civil_date(days), date[..10]);
        days
    }

    /// Every patient's vital signs by encounter, oldest first, with the patient's age in years.
    fn vitals_of(resources: &[Value]) -> Vec<(String, i64, Vec<Seen>)> {
        let mut out = Vec::new();
        for p in resources.iter().filter(|r| r["resourceType"] == "Patient") {
            let reference = format!("Patient/{}", p["id"].as_str().unwrap());
            let age = (TODAY - days(p["birthDate"].as_str().unwrap())) / 365;
            let mut by_encounter: Vec<(String, Seen)> = Vec::new();
            for o in resources.iter().filter(|r| {
                r["resourceType"] == "Observation"
                    && r["subject"]["reference"] == reference.as_str()
                    && r["category"][0]["coding"][0]["code"] == "vital-signs"
            }) {
                let encounter = o["encounter"]["reference"].as_str().unwrap().to_owned();
                if !by_encounter.iter().any(|(e, _)| *e == encounter) {
                    let day = days(o["effectiveDateTime"].as_str().unwrap());
                    by_encounter.push((encounter.clone(), Seen { day, ..Default::default() }));
                }
                let m = &mut by_encounter.iter_mut().find(|(e, _)| *e == encounter).unwrap().1;
                let value = o["valueQuantity"]["value"].as_f64().unwrap_or(f64::NAN);
                match o["code"]["coding"][0]["code"].as_str().unwrap() {
                    "8302-2" => m.height = value,
                    "29463-7" => m.weight = value,
                    "39156-5" => m.bmi = value,
                    "8867-4" => m.heart_rate = value,
                    "8310-5" => m.temperature = value,
                    "9279-1" => m.respiratory_rate = value,
                    "85354-9" => {
                        m.systolic = o["component"][0]["valueQuantity"]["value"].as_f64().unwrap();
                        m.diastolic = o["component"][1]["valueQuantity"]["value"].as_f64().unwrap();
                    }
                    other => panic!("unexpected vital sign {other}"),
                }
            }
            let mut measured: Vec<Seen> = by_encounter.into_iter().map(|(_, m)| m).collect();
            measured.sort_by_key(|m| m.day);
            out.push((reference, age, measured));
        }
        out
    }

    /// The seed test (issue 9): each patient's vital signs are in plausible ranges and
    /// consistent over time — a fixed adult height, a weight that changes by less than 1 kg a
    /// week, a BMI that is the same day's weight over height squared, systolic above diastolic.
    fn assert_plausible(resources: &[Value]) {
        let patients = vitals_of(resources);
        assert!(!patients.is_empty());
        for (patient, age, measured) in patients {
            assert!((18..=100).contains(&age), "{patient}: age {age}");
            assert!(!measured.is_empty(), "{patient} has vital signs");
            for m in &measured {
                let at = format!("{patient} on {}: {m:?}", civil_date(m.day));
                assert!((145.0..=200.0).contains(&m.height), "height, {at}");
                let bmi = m.weight / (m.height / 100.0).powi(2);
                assert!((17.0..=40.0).contains(&bmi), "BMI {bmi}, {at}");
                assert!((m.bmi - bmi).abs() <= 0.051, "the BMI observation is weight/height², {at}");
                assert!((95.0..=170.0).contains(&m.systolic), "systolic, {at}");
                assert!((55.0..=105.0).contains(&m.diastolic), "diastolic, {at}");
                assert!(m.systolic >= m.diastolic + 20.0, "pulse pressure, {at}");
                assert!((50.0..=100.0).contains(&m.heart_rate), "heart rate, {at}");
                assert!((36.0..=37.8).contains(&m.temperature), "temperature, {at}");
                assert!((10.0..=22.0).contains(&m.respiratory_rate), "respiratory rate, {at}");
            }
            for pair in measured.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                assert_eq!(a.height, b.height, "{patient}: an adult's height does not change");
                let weeks = (b.day - a.day) as f64 / 7.0;
                assert!(weeks > 0.0, "{patient}: one encounter a day");
                let rate = (b.weight - a.weight).abs() / weeks;
                assert!(rate < 1.0, "{patient}: {rate:.2} kg/week from {a:?} to {b:?}");
                assert!((b.systolic - a.systolic).abs() <= 25.0, "{patient}: systolic jumps, {a:?} {b:?}");
            }
        }
    }

    #[test]
    fn the_demo_vitals_are_plausible_and_consistent_over_time() {
        assert_plausible(&generate().resources);
        let amy = vitals_of(&generate().resources).into_iter().next().unwrap();
        assert_eq!(amy.0, "Patient/pat-001");
        assert_eq!(amy.2.len(), 6, "Amy Shaw's six visits");
    }

    #[test]
    fn a_visit_with_vitals_is_shaped_like_the_demo_data() {
        let patient = json!({"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01"});
        let measured = Measured { height_cm: Some(170.0), weight_kg: Some(70.0), blood_pressure: Some((120.0, 80.0)) };
        let visit = visit_with_vitals(&patient, "e1", "2026-10-15T09:00:00Z", measured);
        assert_eq!(visit.len(), 5, "an encounter, blood pressure, weight, height and BMI");
        let bmi = visit.iter().find(|r| r["code"]["coding"][0]["code"] == "39156-5").unwrap();
        assert_eq!(bmi["valueQuantity"]["value"], 24.2);
        assert_eq!(bmi["encounter"]["reference"], "Encounter/e1");
        let only_bp = Measured { blood_pressure: Some((120.0, 80.0)), ..Default::default() };
        assert_eq!(visit_with_vitals(&json!({"id": "p1"}), "e1", "2026-10-15T09:00:00Z", only_bp).len(), 2);
    }

    #[test]
    fn the_benchmark_vitals_are_plausible_too() {
        assert_plausible(&generate_scaled(6, 18));
    }
}
