//! The Vitals demo app's charts: Observations grouped into series over time, drawn as SVG
//! line charts (server-side, no script, readable by a screen reader through their titles and
//! a table of the same values).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use smartlaunch_client::resource::{code_in, code_text, observation_time, observation_value, ObservationValue};

const LOINC: &str = "http://loinc.org";
/// Blood pressure panel (LOINC 85354-9): drawn as two lines.
const BLOOD_PRESSURE: &str = "85354-9";
/// Short titles for the common vital signs (their LOINC displays are long).
const VITAL_TITLES: [(&str, &str); 9] = [
    (BLOOD_PRESSURE, "Blood pressure"),
    ("29463-7", "Body weight"),
    ("8302-2", "Body height"),
    ("39156-5", "Body mass index"),
    ("8310-5", "Body temperature"),
    ("8867-4", "Heart rate"),
    ("9279-1", "Respiratory rate"),
    ("59408-5", "Oxygen saturation"),
    ("2708-6", "Oxygen saturation"),
];
/// At most this many lab charts (the ones with the most results).
const MAX_LAB_CHARTS: usize = 8;

/// Vital signs or laboratory results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Vital,
    Lab,
}

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Days since 1970-01-01 (the x axis).
    pub day: i64,
    pub value: f64,
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub label: String,
    pub points: Vec<Point>,
}

/// One chart: a measured quantity over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    pub code: String,
    pub title: String,
    pub unit: String,
    pub kind: Kind,
    pub lines: Vec<Line>,
}

fn category(o: &Value) -> Option<Kind> {
    let categories = o.get("category")?.as_array()?;
    categories.iter().find_map(|c| {
        c.get("coding")?.as_array()?.iter().find_map(|coding| match coding.get("code")?.as_str()? {
            "vital-signs" => Some(Kind::Vital),
            "laboratory" => Some(Kind::Lab),
            _ => None,
        })
    })
}

/// Days since the Unix epoch of a FHIR date or dateTime's date part.
fn day_of(date: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(date.get(..10)?, &format).ok()?;
    Some((d - time::Date::from_calendar_date(1970, time::Month::January, 1).ok()?).whole_days())
}

/// Groups Observations into charts: vital signs first (blood pressure as two lines), then the
/// labs with the most results; points in time order.
pub fn charts(observations: &[Value]) -> Vec<Chart> {
    let mut charts: Vec<Chart> = Vec::new();
    for o in observations {
        let (Some(kind), Some(when)) = (category(o), observation_time(o)) else { continue };
        let (Some(day), Some(concept)) = (day_of(when), o.get("code")) else { continue };
        let code = code_in(concept, LOINC).or_else(|| concept.pointer("/coding/0/code").and_then(Value::as_str));
        let (Some(code), Some(value)) = (code, observation_value(o)) else { continue };
        let date = when[..10].to_owned();
        let (unit, values): (String, Vec<(String, f64)>) = match value {
            ObservationValue::Quantity(q) => (q.unit.unwrap_or_default(), vec![(String::new(), q.value)]),
            ObservationValue::Components(parts) if code == BLOOD_PRESSURE => {
                let unit = parts.first().and_then(|(_, q)| q.unit.clone()).unwrap_or_default();
                (unit, parts.into_iter().map(|(label, q)| (label, q.value)).collect())
            }
            _ => continue,
        };
        let index = match charts.iter().position(|c| c.code == code) {
            Some(i) => i,
            None => {
                let short = VITAL_TITLES.iter().find(|(c, _)| *c == code).map(|(_, t)| (*t).to_owned());
                let title = short.or_else(|| code_text(concept)).unwrap_or_else(|| code.to_owned());
                charts.push(Chart { code: code.to_owned(), title, unit, kind, lines: Vec::new() });
                charts.len() - 1
            }
        };
        let chart = &mut charts[index];
        for (label, value) in values {
            let i = match chart.lines.iter().position(|l| l.label == label) {
                Some(i) => i,
                None => {
                    chart.lines.push(Line { label, points: Vec::new() });
                    chart.lines.len() - 1
                }
            };
            chart.lines[i].points.push(Point { date: date.clone(), day, value });
        }
    }
    for c in &mut charts {
        for l in &mut c.lines {
            l.points.sort_by_key(|p| p.day);
        }
    }
    let count = |c: &Chart| c.lines.iter().map(|l| l.points.len()).sum::<usize>();
    let (mut vitals, mut labs): (Vec<Chart>, Vec<Chart>) = charts.into_iter().partition(|c| c.kind == Kind::Vital);
    vitals.sort_by(|a, b| a.title.cmp(&b.title));
    labs.sort_by(|a, b| count(b).cmp(&count(a)).then(a.title.cmp(&b.title)));
    labs.truncate(MAX_LAB_CHARTS);
    vitals.extend(labs);
    vitals
}

/// Escapes text for HTML and SVG.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn number(v: f64) -> String {
    let rounded = (v * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

impl Chart {
    /// The newest value of each line, e.g. "120/80 mm[Hg] on 2026-10-15".
    pub fn latest(&self) -> String {
        let newest = self.lines.iter().filter_map(|l| l.points.last()).collect::<Vec<_>>();
        let values = newest.iter().map(|p| number(p.value)).collect::<Vec<_>>().join("/");
        let date = newest.iter().map(|p| p.date.as_str()).max().unwrap_or("");
        format!("{values} {} on {date}", self.unit).replace("  ", " ")
    }

    /// The lines' names, for a legend, when there are several (e.g. "Systolic", "Diastolic").
    pub fn legend(&self) -> Vec<(usize, String)> {
        if self.lines.len() < 2 {
            return Vec::new();
        }
        self.lines.iter().enumerate().map(|(n, l)| (n, l.label.clone())).collect()
    }

    /// Every point, newest first, for the table under the chart.
    pub fn rows(&self) -> Vec<(String, String)> {
        let mut dates: Vec<&str> = self.lines.iter().flat_map(|l| l.points.iter().map(|p| p.date.as_str())).collect();
        dates.sort_unstable_by(|a, b| b.cmp(a));
        dates.dedup();
        dates
            .into_iter()
            .map(|d| {
                let values = self
                    .lines
                    .iter()
                    .map(|l| {
                        l.points.iter().find(|p| p.date == d).map(|p| number(p.value)).unwrap_or_else(|| "–".into())
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                (d.to_owned(), values)
            })
            .collect()
    }

    /// The chart as an SVG element (every text escaped).
    pub fn svg(&self, id: &str) -> String {
        const W: f64 = 560.0;
        const H: f64 = 180.0;
        const LEFT: f64 = 48.0;
        const RIGHT: f64 = 12.0;
        const TOP: f64 = 12.0;
        const BOTTOM: f64 = 28.0;
        let points = || self.lines.iter().flat_map(|l| l.points.iter());
        let (Some(first), Some(last)) = (points().map(|p| p.day).min(), points().map(|p| p.day).max()) else {
            return String::new();
        };
        let lo = points().map(|p| p.value).fold(f64::INFINITY, f64::min);
        let hi = points().map(|p| p.value).fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.02).max(0.5);
        let (lo, hi) = (lo - pad, hi + pad);
        let span = (last - first).max(1) as f64;
        let x = |day: i64| LEFT + (day - first) as f64 / span * (W - LEFT - RIGHT);
        let y = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
        let title = escape(&format!("{} ({}), latest {}", self.title, self.unit, self.latest()));
        let mut svg = format!(
            "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"{id}-title\" \
             xmlns=\"http://www.w3.org/2000/svg\"><title id=\"{id}-title\">{title}</title>"
        );
        for i in 0..=2 {
            let v = lo + (hi - lo) * f64::from(i) / 2.0;
            svg.push_str(&format!(
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
                 <text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                W - RIGHT,
                LEFT - 6.0,
                y(v) + 4.0,
                number(v),
                y = y(v),
            ));
        }
        let first_date = points().min_by_key(|p| p.day).map(|p| p.date.clone()).unwrap_or_default();
        let last_date = points().max_by_key(|p| p.day).map(|p| p.date.clone()).unwrap_or_default();
        svg.push_str(&format!(
            "<text class=\"axis\" x=\"{LEFT}\" y=\"{}\">{}</text><text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            H - 8.0,
            escape(&first_date),
            W - RIGHT,
            H - 8.0,
            escape(&last_date)
        ));
        for (n, line) in self.lines.iter().enumerate() {
            let path: Vec<String> = line.points.iter().map(|p| format!("{:.1},{:.1}", x(p.day), y(p.value))).collect();
            svg.push_str(&format!("<polyline class=\"line line-{n}\" points=\"{}\"/>", path.join(" ")));
            for p in &line.points {
                let label = if line.label.is_empty() { String::new() } else { format!("{}: ", line.label) };
                svg.push_str(&format!(
                    "<circle class=\"dot line-{n}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{}</title></circle>",
                    x(p.day),
                    y(p.value),
                    escape(&format!("{} {label}{} {}", p.date, number(p.value), self.unit))
                ));
            }
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vital(code: &str, display: &str, date: &str, value: f64) -> Value {
        json!({"resourceType": "Observation", "category": [{"coding": [{"code": "vital-signs"}]}],
               "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
               "effectiveDateTime": date, "valueQuantity": {"value": value, "unit": "kg"}})
    }

    #[test]
    fn observations_become_charts_in_time_order_with_blood_pressure_as_two_lines() {
        let bp = json!({"category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": BLOOD_PRESSURE}], "text": "Blood pressure"},
            "effectiveDateTime": "2026-01-02T10:00:00Z",
            "component": [{"code": {"text": "Systolic"}, "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
                          {"code": {"text": "Diastolic"}, "valueQuantity": {"value": 80, "unit": "mm[Hg]"}}]});
        let lab = json!({"category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": "4548-4", "display": "HbA1c"}]},
            "effectiveDateTime": "2026-01-01", "valueQuantity": {"value": 6.1, "unit": "%"}});
        let other = json!({"category": [{"coding": [{"code": "social-history"}]}], "effectiveDateTime": "2026-01-01"});
        let obs = vec![
            vital("29463-7", "Body weight", "2026-03-01T00:00:00Z", 71.0),
            vital("29463-7", "Body weight", "2026-01-01T00:00:00Z", 70.0),
            bp,
            lab,
            other,
        ];
        let charts = charts(&obs);
        assert_eq!(
            charts.iter().map(|c| c.title.as_str()).collect::<Vec<_>>(),
            ["Blood pressure", "Body weight", "HbA1c"]
        );
        assert_eq!(charts[0].lines.len(), 2);
        assert_eq!(charts[0].latest(), "120/80 mm[Hg] on 2026-01-02");
        let weight = &charts[1];
        assert_eq!(weight.lines[0].points.iter().map(|p| p.value).collect::<Vec<_>>(), [70.0, 71.0]);
        assert_eq!(weight.rows()[0], ("2026-03-01".into(), "71".into()));
        assert_eq!(charts[2].kind, Kind::Lab);
    }

    #[test]
    fn the_svg_escapes_what_the_server_sent() {
        let obs = vec![vital("x", "<script>alert(1)</script>", "2026-01-01", 1.0)];
        let svg = charts(&obs)[0].svg("c0");
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("role=\"img\""));
    }
}
