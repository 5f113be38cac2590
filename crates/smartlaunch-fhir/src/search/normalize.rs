//! Value normalisation shared by indexing and querying: accent- and case-folded strings, and
//! FHIR dates as ranges of Unix seconds (a partial date covers its whole year, month or day).

/// Lower-cases and strips the accents of Latin letters (`Zoë` → `zoe`), so string search is
/// case- and accent-insensitive (R4 string search).
pub fn fold(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
            'ç' | 'ć' | 'č' => 'c',
            'ď' | 'đ' => 'd',
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
            'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => 'i',
            'ñ' | 'ń' | 'ň' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
            'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => 'u',
            'ý' | 'ÿ' => 'y',
            'ś' | 'š' | 'ş' => 's',
            'ź' | 'ż' | 'ž' => 'z',
            'ł' => 'l',
            'ř' => 'r',
            'ť' | 'ţ' => 't',
            'ğ' => 'g',
            c => c,
        })
        .collect()
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn number(s: &str, len: usize) -> Option<i64> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// The range `[low, high]` (Unix seconds, inclusive) a FHIR date, dateTime or instant covers:
/// `2026` is the whole year, `2026-03` the month, `2026-03-04` the day (UTC), a time its second
/// (or minute, when given without seconds).
pub fn date_range(value: &str) -> Option<(i64, i64)> {
    let (date, time) = match value.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (value, None),
    };
    let mut parts = date.split('-');
    let y = number(parts.next()?, 4)?;
    let m = parts.next().map(|m| number(m, 2)).unwrap_or(Some(0))?;
    let d = parts.next().map(|d| number(d, 2)).unwrap_or(Some(0))?;
    if parts.next().is_some() || m > 12 || (m == 0 && d != 0) || (m > 0 && d > days_in_month(y, m)) {
        return None;
    }
    let day_start = |m: i64, d: i64| days_from_civil(y, m, d) * 86_400;
    let Some(time) = time else {
        return Some(match (m, d) {
            (0, _) => (day_start(1, 1), day_start(12, 31) + 86_399),
            (m, 0) => (day_start(m, 1), day_start(m, days_in_month(y, m)) + 86_399),
            (m, d) => (day_start(m, d), day_start(m, d) + 86_399),
        });
    };
    if d == 0 {
        return None;
    }
    // hh:mm[:ss[.fff]] then Z or ±hh:mm
    let (clock, offset_seconds) = match time.find(['Z', '+', '-']) {
        Some(i) => {
            let (clock, zone) = time.split_at(i);
            let offset = match zone {
                "Z" => 0,
                z => {
                    let sign = if z.starts_with('-') { -1 } else { 1 };
                    let (h, mi) = z[1..].split_once(':')?;
                    sign * (number(h, 2)? * 3600 + number(mi, 2)? * 60)
                }
            };
            (clock, offset)
        }
        None => (time, 0),
    };
    let mut fields = clock.split(':');
    let h = number(fields.next()?, 2)?;
    let mi = number(fields.next()?, 2)?;
    let (s, width) = match fields.next() {
        Some(sec) => (number(sec.split('.').next()?, 2)?, 0),
        None => (0, 59),
    };
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let t = day_start(m, d) + h * 3600 + mi * 60 + s - offset_seconds;
    Some((t, t + width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding() {
        assert_eq!(fold("Zoë ÅNGSTRÖM"), "zoe angstrom");
        assert_eq!(fold("O'Brien"), "o'brien");
    }

    #[test]
    fn partial_dates_are_ranges() {
        let day = date_range("2026-03-04").unwrap();
        assert_eq!(day.1 - day.0, 86_399);
        assert_eq!(day.0, days_from_civil(2026, 3, 4) * 86_400);
        let month = date_range("2024-02").unwrap();
        assert_eq!(month.1 - month.0 + 1, 29 * 86_400, "a leap February");
        let year = date_range("2025").unwrap();
        assert_eq!(year.1 - year.0 + 1, 365 * 86_400);
        assert_eq!(date_range("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(date_range("1970-01-01T01:00:00+01:00"), Some((0, 0)));
        assert_eq!(date_range("1970-01-01T00:00:00.123-00:30"), Some((1800, 1800)));
        assert_eq!(date_range("1970-01-01T00:01"), Some((60, 119)));
        for bad in ["", "26", "2026-13", "2026-02-30", "2026-1-1", "2026-01-01T25:00", "x"] {
            assert_eq!(date_range(bad), None, "{bad}");
        }
    }
}
