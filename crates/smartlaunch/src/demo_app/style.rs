//! The EHR's look for the Vitals demo app (SMART 2.2 §"Styling"): the JSON at
//! `smart_style_url` becomes CSS custom properties, each value checked against a narrow
//! pattern so a hostile style cannot break out of the stylesheet.

use serde_json::Value;

/// The style properties of SMART 2.2, and the CSS variable each sets.
const PROPERTIES: [(&str, &str, Check); 11] = [
    ("color_background", "--background", Check::Color),
    ("color_error", "--error", Check::Color),
    ("color_highlight", "--highlight", Check::Color),
    ("color_modal_backdrop", "--backdrop", Check::Color),
    ("color_success", "--success", Check::Color),
    ("color_text", "--text", Check::Color),
    ("dim_border_radius", "--radius", Check::Length),
    ("dim_font_size", "--font-size", Check::Length),
    ("dim_spacing_size", "--spacing", Check::Length),
    ("font_family_body", "--font-body", Check::Font),
    ("font_family_heading", "--font-heading", Check::Font),
];

#[derive(Clone, Copy)]
enum Check {
    Color,
    Length,
    Font,
}

fn allowed(check: Check, v: &str) -> bool {
    if v.is_empty() || v.len() > 200 {
        return false;
    }
    match check {
        Check::Color => {
            let hex = v
                .strip_prefix('#')
                .is_some_and(|h| matches!(h.len(), 3 | 4 | 6 | 8) && h.chars().all(|c| c.is_ascii_hexdigit()));
            let named = v.len() <= 20 && v.chars().all(|c| c.is_ascii_alphabetic());
            let args = ["rgb(", "rgba(", "hsl(", "hsla("]
                .iter()
                .find_map(|f| v.strip_prefix(f))
                .and_then(|rest| rest.strip_suffix(')'));
            // Numbers only inside: no `url(…)`, no second function.
            let function = args.is_some_and(|a| a.chars().all(|c| c.is_ascii_digit() || " ,.%/".contains(c)));
            hex || named || function
        }
        Check::Length => {
            let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
            let unit = &v[digits.len()..];
            !digits.is_empty()
                && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
                && matches!(unit, "px" | "rem" | "em" | "%" | "pt")
        }
        Check::Font => {
            // Balanced quotes: an open one would swallow the rest of the stylesheet.
            v.chars().all(|c| c.is_ascii_alphanumeric() || " ,-_'\"".contains(c))
                && v.matches('"').count().is_multiple_of(2)
                && v.matches('\'').count().is_multiple_of(2)
        }
    }
}

/// `:root { … }` with the style's accepted properties (unknown or unsafe ones are left out).
pub fn css_of(style: &Value) -> String {
    let mut css = String::from(":root{");
    for (name, variable, check) in PROPERTIES {
        if let Some(v) = style.get(name).and_then(Value::as_str).map(str::trim) {
            if allowed(check, v) {
                css.push_str(&format!("{variable}:{v};"));
            }
        }
    }
    css.push('}');
    css
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_style_becomes_css_variables() {
        let css = css_of(&json!({"color_background": "#edeae3", "color_highlight": "rgb(0, 90, 156)",
            "dim_font_size": "16px", "font_family_body": "\"Source Sans Pro\", sans-serif", "unknown": "x"}));
        assert_eq!(
            css,
            ":root{--background:#edeae3;--highlight:rgb(0, 90, 156);--font-size:16px;--font-body:\"Source Sans Pro\", sans-serif;}"
        );
    }

    #[test]
    fn a_hostile_style_cannot_break_out() {
        let css = css_of(&json!({
            "color_background": "red;}</style><script>alert(1)</script>",
            "color_text": "url(https://evil.example/x)",
            "dim_font_size": "16px;background:url(x)",
            "font_family_body": "x}</style><script>",
            "color_error": "expression(alert(1))",
            "color_success": "rgb(0,0,0) url(//evil.example/x)",
            "color_modal_backdrop": "rgb(0, calc(1), 0)",
            "font_family_heading": "\"Open"
        }));
        assert_eq!(css, ":root{}");
    }
}
