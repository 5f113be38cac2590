//! One scope: parsing (spec digest §2) and canonical rendering.

use std::fmt;
use std::str::FromStr;

/// The SMART scope URI prefix (spec digest §2, checklist item 86).
const SMART_URI_PREFIX: &str = "http://smarthealthit.org/fhir/scopes/";
/// The OpenID Connect scope URI prefix (checklist item 86).
const OPENID_URI_PREFIX: &str = "http://openid.net/specs/openid-connect-core-1_0#";

/// Why a scope string is not a valid SMART scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope `{0}` is malformed: {1}")]
    Malformed(String, &'static str),
}

/// The level a resource scope applies to: `patient/`, `user/` or `system/` (spec digest §1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Patient,
    User,
    System,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "patient",
            Level::User => "user",
            Level::System => "system",
        }
    }
}

/// A FHIR interaction as SMART v2 groups them (spec digest §1.8, checklist item 78).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// `c`: type create.
    Create,
    /// `r`: read, vread, instance history.
    Read,
    /// `u`: update (including update-as-create) and patch.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: type search, type history, system search and history.
    Search,
}

impl Interaction {
    fn bit(self) -> u8 {
        match self {
            Interaction::Create => 1,
            Interaction::Read => 2,
            Interaction::Update => 4,
            Interaction::Delete => 8,
            Interaction::Search => 16,
        }
    }
}

/// A set of the `c r u d s` permissions of a v2 scope suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interactions(u8);

impl Interactions {
    const LETTERS: [(char, Interaction); 5] = [
        ('c', Interaction::Create),
        ('r', Interaction::Read),
        ('u', Interaction::Update),
        ('d', Interaction::Delete),
        ('s', Interaction::Search),
    ];
    /// v1 `read` = `rs` (spec digest §1.8, checklist item 84).
    pub const READ: Interactions = Interactions(2 | 16);
    /// v1 `write` = `cud`.
    pub const WRITE: Interactions = Interactions(1 | 4 | 8);
    /// v1 `*` = `cruds`.
    pub const ALL: Interactions = Interactions(31);

    /// Parses a v2 suffix: a non-empty subset of `cruds`, in that order, each letter at most once.
    fn parse_v2(suffix: &str) -> Option<Interactions> {
        let mut bits = 0u8;
        let mut next = 0usize;
        for ch in suffix.chars() {
            let pos = Self::LETTERS[next..].iter().position(|(l, _)| *l == ch)? + next;
            bits |= Self::LETTERS[pos].1.bit();
            next = pos + 1;
        }
        (bits != 0).then_some(Interactions(bits))
    }

    pub fn contains(self, interaction: Interaction) -> bool {
        self.0 & interaction.bit() != 0
    }

    pub fn is_subset_of(self, other: Interactions) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn intersect(self, other: Interactions) -> Interactions {
        Interactions(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The v2 suffix, e.g. `rs`.
    pub fn suffix(self) -> String {
        Self::LETTERS.iter().filter(|(_, i)| self.contains(*i)).map(|(l, _)| *l).collect()
    }
}

/// `patient/Observation.rs?category=…|laboratory` and its v1 relatives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    pub level: Level,
    /// `None` is the `*` wildcard: every type, now and in the future.
    pub resource_type: Option<String>,
    pub interactions: Interactions,
    /// Granular `?param=value&…` restrictions, as FHIR search parameters (spec digest §1.8).
    pub filter: Vec<(String, String)>,
    /// Written in v1 syntax (`.read`, `.write`, `.*`); rendered back the same way (checklist item 84).
    pub v1: bool,
}

impl ResourceScope {
    /// Whether this scope names `resource_type` (directly or through `*`).
    pub fn covers_type(&self, resource_type: &str) -> bool {
        self.resource_type.as_deref().is_none_or(|t| t == resource_type)
    }

    /// Whether everything `self` allows is also allowed by `other`.
    pub fn is_covered_by(&self, other: &ResourceScope) -> bool {
        self.level == other.level
            && match (&self.resource_type, &other.resource_type) {
                (_, None) => true,
                (Some(a), Some(b)) => a == b,
                (None, Some(_)) => false,
            }
            && self.interactions.is_subset_of(other.interactions)
            && other.filter.iter().all(|f| self.filter.contains(f))
    }

    /// What both `self` and `other` allow, if anything.
    pub fn intersect(&self, other: &ResourceScope) -> Option<ResourceScope> {
        if self.level != other.level {
            return None;
        }
        let resource_type = match (&self.resource_type, &other.resource_type) {
            (None, t) | (t, None) => t.clone(),
            (Some(a), Some(b)) if a == b => Some(a.clone()),
            _ => return None,
        };
        let interactions = self.interactions.intersect(other.interactions);
        if interactions.is_empty() {
            return None;
        }
        let mut filter = self.filter.clone();
        for f in &other.filter {
            if !filter.contains(f) {
                filter.push(f.clone());
            }
        }
        let v1 = self.v1 && v1_suffix(interactions).is_some() && filter.is_empty();
        Some(ResourceScope { level: self.level, resource_type, interactions, filter, v1 })
    }

    fn parse(level: Level, rest: &str, original: &str) -> Result<ResourceScope, ScopeError> {
        let malformed = |why| ScopeError::Malformed(original.to_owned(), why);
        let (body, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (ty, suffix) =
            body.rsplit_once('.').ok_or_else(|| malformed("expected `<Type>.<permissions>`, e.g. `Observation.rs`"))?;
        let resource_type = match ty {
            "*" => None,
            t if is_resource_type(t) => Some(t.to_owned()),
            _ => return Err(malformed("the resource type must be `*` or a FHIR type such as `Observation`")),
        };
        let (interactions, v1) = match suffix {
            "read" => (Interactions::READ, true),
            "write" => (Interactions::WRITE, true),
            "*" => (Interactions::ALL, true),
            s => (
                Interactions::parse_v2(s).ok_or_else(|| {
                    malformed("permissions must be a subset of `cruds` in that order, or v1 `read`, `write`, `*`")
                })?,
                false,
            ),
        };
        let mut filter = Vec::new();
        if let Some(q) = query {
            if v1 {
                return Err(malformed("v1 scopes (`.read`, `.write`, `.*`) cannot carry `?` filters"));
            }
            for pair in q.split('&') {
                match pair.split_once('=') {
                    Some((k, v)) if !k.is_empty() && !v.is_empty() => filter.push((k.to_owned(), v.to_owned())),
                    _ => return Err(malformed("each filter must be `param=value`")),
                }
            }
        }
        Ok(ResourceScope { level, resource_type, interactions, filter, v1 })
    }
}

fn v1_suffix(i: Interactions) -> Option<&'static str> {
    match i {
        Interactions::READ => Some("read"),
        Interactions::WRITE => Some("write"),
        Interactions::ALL => Some("*"),
        _ => None,
    }
}

/// A FHIR resource type name: an upper-case ASCII letter followed by ASCII letters or digits.
fn is_resource_type(t: &str) -> bool {
    let mut chars = t.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric()) && t.len() <= 64
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.", self.level.as_str(), self.resource_type.as_deref().unwrap_or("*"))?;
        match (self.v1, v1_suffix(self.interactions)) {
            (true, Some(s)) => f.write_str(s)?,
            _ => f.write_str(&self.interactions.suffix())?,
        }
        for (i, (k, v)) in self.filter.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// One SMART scope (spec digest §2, "Other scopes").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Resource(ResourceScope),
    /// `launch`: EHR launch, used with the `launch` parameter.
    Launch,
    /// `launch/patient`: a patient in context.
    LaunchPatient,
    /// `launch/encounter`: an encounter in context.
    LaunchEncounter,
    /// `launch/<lowercase type>[?role=<uri>]` (experimental, spec digest §1.4).
    LaunchContext {
        resource: String,
        role: Option<String>,
    },
    OpenId,
    FhirUser,
    OfflineAccess,
    OnlineAccess,
    /// Anything else that is not malformed SMART syntax (`profile`, `__ext.scope`, a URI…).
    /// Kept so it can be reported; never granted by this server.
    Other(String),
}

impl Scope {
    /// Whether this is a `system/` resource scope (backend services, spec digest §1.10).
    pub fn is_system(&self) -> bool {
        matches!(self, Scope::Resource(r) if r.level == Level::System)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(raw: &str) -> Result<Scope, ScopeError> {
        let s = raw.strip_prefix(SMART_URI_PREFIX).or_else(|| raw.strip_prefix(OPENID_URI_PREFIX)).unwrap_or(raw);
        Ok(match s {
            "launch" => Scope::Launch,
            "launch/patient" => Scope::LaunchPatient,
            "launch/encounter" => Scope::LaunchEncounter,
            "openid" => Scope::OpenId,
            "fhirUser" => Scope::FhirUser,
            "offline_access" => Scope::OfflineAccess,
            "online_access" => Scope::OnlineAccess,
            _ => {
                if let Some(rest) = s.strip_prefix("patient/") {
                    Scope::Resource(ResourceScope::parse(Level::Patient, rest, raw)?)
                } else if let Some(rest) = s.strip_prefix("user/") {
                    Scope::Resource(ResourceScope::parse(Level::User, rest, raw)?)
                } else if let Some(rest) = s.strip_prefix("system/") {
                    Scope::Resource(ResourceScope::parse(Level::System, rest, raw)?)
                } else if let Some(rest) = s.strip_prefix("launch/") {
                    parse_launch_context(rest, raw)?
                } else if s.is_empty() || s.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
                    return Err(ScopeError::Malformed(raw.to_owned(), "contains characters not allowed in a scope"));
                } else {
                    Scope::Other(s.to_owned())
                }
            }
        })
    }
}

fn parse_launch_context(rest: &str, raw: &str) -> Result<Scope, ScopeError> {
    let (resource, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    if resource.is_empty() || !resource.chars().all(|c| c.is_ascii_lowercase()) {
        return Err(ScopeError::Malformed(raw.to_owned(), "launch context scopes are `launch/<lowercase type>`"));
    }
    let role = match query {
        None => None,
        Some(q) => match q.strip_prefix("role=") {
            Some(r) if !r.is_empty() && !r.contains('&') => Some(r.to_owned()),
            _ => return Err(ScopeError::Malformed(raw.to_owned(), "a launch context scope takes one `?role=<uri>`")),
        },
    };
    Ok(match (resource, &role) {
        ("patient", None) => Scope::LaunchPatient,
        ("encounter", None) => Scope::LaunchEncounter,
        _ => Scope::LaunchContext { resource: resource.to_owned(), role },
    })
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Resource(r) => r.fmt(f),
            Scope::Launch => f.write_str("launch"),
            Scope::LaunchPatient => f.write_str("launch/patient"),
            Scope::LaunchEncounter => f.write_str("launch/encounter"),
            Scope::LaunchContext { resource, role: None } => write!(f, "launch/{resource}"),
            Scope::LaunchContext { resource, role: Some(r) } => write!(f, "launch/{resource}?role={r}"),
            Scope::OpenId => f.write_str("openid"),
            Scope::FhirUser => f.write_str("fhirUser"),
            Scope::OfflineAccess => f.write_str("offline_access"),
            Scope::OnlineAccess => f.write_str("online_access"),
            Scope::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Scope {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn res(s: &str) -> ResourceScope {
        match p(s) {
            Scope::Resource(r) => r,
            other => panic!("{s} parsed as {other:?}"),
        }
    }

    #[test]
    fn v2_suffixes_in_order_are_accepted() {
        for s in ["c", "r", "rs", "cruds", "cud", "ds", "cs"] {
            let r = res(&format!("patient/Observation.{s}"));
            assert_eq!(r.interactions.suffix(), s);
            assert!(!r.v1);
        }
    }

    #[test]
    fn v2_suffixes_out_of_order_repeated_or_empty_are_malformed() {
        // spec digest §2: "a subset of the in-order string .cruds" (checklist item 85: we reject).
        for s in ["sr", "rr", "", "x", "rd s", "crudsx", "dus"] {
            assert!(format!("patient/Observation.{s}").parse::<Scope>().is_err(), "{s}");
        }
    }

    #[test]
    fn v1_scopes_map_to_v2_and_render_back_as_v1() {
        // checklist item 84: read ⇒ rs, write ⇒ cud, * ⇒ cruds; v1 returned when v1 requested.
        let read = res("patient/Observation.read");
        assert_eq!(read.interactions, Interactions::READ);
        assert_eq!(read.to_string(), "patient/Observation.read");
        assert_eq!(res("user/*.write").interactions, Interactions::WRITE);
        assert_eq!(res("user/*.*").interactions, Interactions::ALL);
        assert_eq!(res("user/*.*").to_string(), "user/*.*");
    }

    #[test]
    fn granular_filters_are_parsed_and_rendered() {
        let s = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
        let r = res(s);
        assert_eq!(r.filter.len(), 1);
        assert_eq!(r.filter[0].0, "category");
        assert_eq!(r.filter[0].1, "http://terminology.hl7.org/CodeSystem/observation-category|laboratory");
        assert_eq!(r.to_string(), s);
        let two = res("patient/Basic.cuds?code=https://myapp.example.org|keys&subject:missing=true");
        assert_eq!(two.filter.len(), 2);
        assert!("patient/Observation.rs?category".parse::<Scope>().is_err());
        assert!("patient/Observation.read?category=x".parse::<Scope>().is_err());
    }

    #[test]
    fn wildcards_and_levels() {
        let r = res("system/*.rs");
        assert_eq!(r.level, Level::System);
        assert_eq!(r.resource_type, None);
        assert!(r.covers_type("Anything"));
        assert!(res("user/Patient.r").covers_type("Patient"));
        assert!(!res("user/Patient.r").covers_type("Observation"));
        assert!("clinic/Patient.r".parse::<Scope>().map(|s| matches!(s, Scope::Other(_))).unwrap());
        assert!("patient/observation.rs".parse::<Scope>().is_err());
    }

    #[test]
    fn launch_and_identity_scopes() {
        assert_eq!(p("launch"), Scope::Launch);
        assert_eq!(p("launch/patient"), Scope::LaunchPatient);
        assert_eq!(p("launch/encounter"), Scope::LaunchEncounter);
        assert_eq!(p("openid"), Scope::OpenId);
        assert_eq!(p("fhirUser"), Scope::FhirUser);
        assert_eq!(p("offline_access"), Scope::OfflineAccess);
        assert_eq!(p("online_access"), Scope::OnlineAccess);
        let role = p("launch/questionnaire?role=http://example.org/role");
        assert_eq!(role.to_string(), "launch/questionnaire?role=http://example.org/role");
        assert!("launch/Patient".parse::<Scope>().is_err());
        assert!("launch/patient?x=1".parse::<Scope>().is_err());
    }

    #[test]
    fn uri_forms_are_accepted() {
        // checklist item 86
        assert_eq!(p("http://smarthealthit.org/fhir/scopes/patient/*.rs"), p("patient/*.rs"));
        assert_eq!(p("http://openid.net/specs/openid-connect-core-1_0#openid"), Scope::OpenId);
    }

    #[test]
    fn covering_and_intersection() {
        let all = res("patient/*.rs");
        let obs = res("patient/Observation.r");
        let lab = res("patient/Observation.rs?category=laboratory");
        assert!(obs.is_covered_by(&all));
        assert!(!all.is_covered_by(&obs));
        assert!(lab.is_covered_by(&all));
        assert!(!obs.is_covered_by(&lab), "an unfiltered scope is wider than a filtered one");
        assert!(!res("user/Observation.r").is_covered_by(&all), "levels differ");
        let cruds = res("patient/*.cruds");
        let narrowed = cruds.intersect(&obs).unwrap();
        assert_eq!(narrowed.to_string(), "patient/Observation.r");
        assert!(res("patient/Observation.c").intersect(&obs).is_none());
        assert_eq!(res("patient/*.read").intersect(&all).unwrap().to_string(), "patient/*.read");
    }
}
