//! FHIR resources: the current version of each resource as JSON, with its compartment and a
//! sort key (a Patient's name, an Encounter's or Observation's date).

use serde_json::{json, Value};
use smartlaunch_fhir::compartment::patient_of;
use smartlaunch_fhir::store::{ResourceStore, StoreError, StoredResource};

use crate::Db;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// The key a resource is listed by: `family, given` for a Patient, the date for clinical data.
fn sort_key(resource: &Value) -> Option<String> {
    match resource.get("resourceType")?.as_str()? {
        "Patient" | "Practitioner" => {
            let name = resource.get("name")?.get(0)?;
            let family = name.get("family").and_then(Value::as_str).unwrap_or_default();
            let given: Vec<&str> = name
                .get("given")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            Some(format!("{family}, {}", given.join(" ")).to_lowercase())
        }
        "Encounter" => resource.pointer("/period/start")?.as_str().map(str::to_owned),
        _ => ["effectiveDateTime", "onsetDateTime", "authoredOn", "recordedDate", "date"]
            .iter()
            .find_map(|k| resource.get(*k)?.as_str().map(str::to_owned)),
    }
}

fn parse_all(rows: Vec<(String,)>) -> Result<Vec<Value>, StoreError> {
    rows.into_iter().map(|(json,)| serde_json::from_str(&json).map_err(err)).collect()
}

impl ResourceStore for Db {
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        let row: Option<(String, i64, String, Option<String>)> = sqlx::query_as(
            "SELECT content, version_id, last_updated, patient_id FROM resources WHERE resource_type = ? AND id = ?",
        )
        .bind(resource_type)
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(err)?;
        Ok(row.map(|(json, version_id, last_updated, patient_id)| StoredResource {
            json,
            version_id,
            last_updated,
            patient_id,
        }))
    }

    async fn put_all(&self, resources: &[Value], now: &str) -> Result<usize, StoreError> {
        let mut tx = self.write.begin().await.map_err(err)?;
        for resource in resources {
            let (Some(ty), Some(id)) =
                (resource.get("resourceType").and_then(Value::as_str), resource.get("id").and_then(Value::as_str))
            else {
                return Err(StoreError("a resource without resourceType or id".into()));
            };
            let previous: Option<(i64,)> =
                sqlx::query_as("SELECT version_id FROM resources WHERE resource_type = ? AND id = ?")
                    .bind(ty)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
            let version = previous.map_or(1, |(v,)| v + 1);
            let mut stored = resource.clone();
            stored["meta"] = json!({ "versionId": version.to_string(), "lastUpdated": now });
            sqlx::query(
                "INSERT INTO resources (resource_type, id, version_id, last_updated, patient_id, sort_key, content) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (resource_type, id) DO UPDATE SET version_id = excluded.version_id, \
                 last_updated = excluded.last_updated, patient_id = excluded.patient_id, \
                 sort_key = excluded.sort_key, content = excluded.content",
            )
            .bind(ty)
            .bind(id)
            .bind(version)
            .bind(now)
            .bind(patient_of(resource))
            .bind(sort_key(resource))
            .bind(stored.to_string())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(resources.len())
    }

    async fn count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM resources").fetch_one(&self.read).await.map_err(err)?;
        Ok(n)
    }

    async fn search_patients(&self, name: &str, offset: i64, limit: i64) -> Result<(Vec<Value>, i64), StoreError> {
        let escaped: String = name
            .trim()
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("%{escaped}%");
        let (total,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM resources WHERE resource_type = 'Patient' AND sort_key LIKE ? ESCAPE '\\'",
        )
        .bind(&pattern)
        .fetch_one(&self.read)
        .await
        .map_err(err)?;
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT content FROM resources WHERE resource_type = 'Patient' AND sort_key LIKE ? ESCAPE '\\' \
             ORDER BY sort_key, id LIMIT ? OFFSET ?",
        )
        .bind(&pattern)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.read)
        .await
        .map_err(err)?;
        Ok((parse_all(rows)?, total))
    }

    async fn encounters_of(&self, patient_id: &str) -> Result<Vec<Value>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT content FROM resources WHERE patient_id = ? AND resource_type = 'Encounter' ORDER BY sort_key DESC, id",
        )
        .bind(patient_id)
        .fetch_all(&self.read)
        .await
        .map_err(err)?;
        parse_all(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys() {
        let p = json!({"resourceType": "Patient", "name": [{"family": "Shaw", "given": ["Amy", "V."]}]});
        assert_eq!(sort_key(&p).as_deref(), Some("shaw, amy v."));
        let e = json!({"resourceType": "Encounter", "period": {"start": "2026-01-02T09:00:00Z"}});
        assert_eq!(sort_key(&e).as_deref(), Some("2026-01-02T09:00:00Z"));
    }
}
