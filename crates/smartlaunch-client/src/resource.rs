//! Small typed views of the resources apps read most (FHIR R4 Patient, Observation, Bundle),
//! over `serde_json::Value`: no generated model, just the fields a chart or a banner needs.

use serde_json::Value;

/// A patient's display name: the `official` (else first) name, as "Given Family", or its
/// `text`.
pub fn patient_name(patient: &Value) -> Option<String> {
    let names = patient.get("name")?.as_array()?;
    let name =
        names.iter().find(|n| n.get("use").and_then(Value::as_str) == Some("official")).or_else(|| names.first())?;
    if let Some(text) = name.get("text").and_then(Value::as_str) {
        return Some(text.to_owned());
    }
    let mut parts: Vec<&str> =
        name.get("given").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    if let Some(family) = name.get("family").and_then(Value::as_str) {
        parts.push(family);
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// A measured value with its unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    pub value: f64,
    pub unit: Option<String>,
}

fn quantity(v: &Value) -> Option<Quantity> {
    let q = v.get("valueQuantity")?;
    Some(Quantity {
        value: q.get("value")?.as_f64()?,
        unit: q.get("unit").or_else(|| q.get("code")).and_then(Value::as_str).map(str::to_owned),
    })
}

/// An Observation's value: its `valueQuantity`, or, for a panel such as blood pressure, its
/// components' quantities with their codes' display text.
#[derive(Debug, Clone, PartialEq)]
pub enum ObservationValue {
    Quantity(Quantity),
    Components(Vec<(String, Quantity)>),
    /// `valueString`, `valueCodeableConcept.text`, …: shown as text.
    Text(String),
}

/// The value of an Observation, if it has one this helper knows.
pub fn observation_value(observation: &Value) -> Option<ObservationValue> {
    if let Some(q) = quantity(observation) {
        return Some(ObservationValue::Quantity(q));
    }
    if let Some(components) = observation.get("component").and_then(Value::as_array) {
        let parts: Vec<(String, Quantity)> =
            components.iter().filter_map(|c| Some((code_text(c.get("code")?)?, quantity(c)?))).collect();
        if !parts.is_empty() {
            return Some(ObservationValue::Components(parts));
        }
    }
    observation
        .get("valueString")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| observation.get("valueCodeableConcept").and_then(code_text))
        .map(ObservationValue::Text)
}

/// A CodeableConcept's text, else its first coding's display, else its first code.
pub fn code_text(concept: &Value) -> Option<String> {
    if let Some(t) = concept.get("text").and_then(Value::as_str) {
        return Some(t.to_owned());
    }
    let coding = concept.get("coding")?.as_array()?.first()?;
    coding.get("display").or_else(|| coding.get("code")).and_then(Value::as_str).map(str::to_owned)
}

/// The first code of a CodeableConcept in `system` (e.g. LOINC `http://loinc.org`).
pub fn code_in<'a>(concept: &'a Value, system: &str) -> Option<&'a str> {
    concept
        .get("coding")?
        .as_array()?
        .iter()
        .find(|c| c.get("system").and_then(Value::as_str) == Some(system))?
        .get("code")?
        .as_str()
}

/// When an Observation was made: `effectiveDateTime`, else the start of `effectivePeriod`,
/// else `issued`.
pub fn observation_time(observation: &Value) -> Option<&str> {
    observation
        .get("effectiveDateTime")
        .or_else(|| observation.pointer("/effectivePeriod/start"))
        .or_else(|| observation.get("issued"))
        .and_then(Value::as_str)
}

/// The resources of a Bundle's entries.
pub fn bundle_resources(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle.get("entry").and_then(Value::as_array).into_iter().flatten().filter_map(|e| e.get("resource"))
}

/// The URL of a Bundle's `next` page.
pub fn next_link(bundle: &Value) -> Option<&str> {
    bundle
        .get("link")?
        .as_array()?
        .iter()
        .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))?
        .get("url")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_name_prefers_official_then_text() {
        let p = json!({"name": [{"use": "nickname", "given": ["Bob"]}, {"use": "official", "given": ["Robert", "J"], "family": "Smith"}]});
        assert_eq!(patient_name(&p).unwrap(), "Robert J Smith");
        assert_eq!(patient_name(&json!({"name": [{"text": "Dr. Ann Lee"}]})).unwrap(), "Dr. Ann Lee");
        assert_eq!(patient_name(&json!({"resourceType": "Patient"})), None);
    }

    #[test]
    fn observation_values_quantity_components_and_text() {
        let weight = json!({"valueQuantity": {"value": 72.5, "unit": "kg"}, "effectiveDateTime": "2024-01-02"});
        assert_eq!(
            observation_value(&weight),
            Some(ObservationValue::Quantity(Quantity { value: 72.5, unit: Some("kg".into()) }))
        );
        assert_eq!(observation_time(&weight), Some("2024-01-02"));
        let bp = json!({"component": [
            {"code": {"coding": [{"display": "Systolic"}]}, "valueQuantity": {"value": 120, "code": "mm[Hg]"}},
            {"code": {"text": "Diastolic"}, "valueQuantity": {"value": 80}}
        ]});
        match observation_value(&bp).unwrap() {
            ObservationValue::Components(c) => {
                assert_eq!(c[0].0, "Systolic");
                assert_eq!(c[0].1.unit.as_deref(), Some("mm[Hg]"));
                assert_eq!(c[1].1.value, 80.0);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            observation_value(&json!({"valueString": "positive"})),
            Some(ObservationValue::Text("positive".into()))
        );
        assert_eq!(observation_value(&json!({})), None);
    }

    #[test]
    fn bundles_give_their_resources_and_next_page() {
        let b = json!({"link": [{"relation": "self", "url": "a"}, {"relation": "next", "url": "b"}],
                       "entry": [{"resource": {"id": "1"}}, {"search": {}}]});
        assert_eq!(next_link(&b), Some("b"));
        assert_eq!(bundle_resources(&b).count(), 1);
        assert_eq!(code_in(&json!({"coding": [{"system": "s", "code": "c"}]}), "s"), Some("c"));
    }
}
