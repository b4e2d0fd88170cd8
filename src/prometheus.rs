//! The Prometheus text exposition format (version 0.0.4), for the daemon's and the receiver's
//! `/metrics`: metric families and samples, with label values escaped.

use std::fmt::Write;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape(help, false));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, text)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape(text, true));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

/// Label values escape `\`, `"` and line feeds; HELP text escapes `\` and line feeds only.
fn escape(text: &str, quote: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// Prometheus spells the non-finite values `+Inf`, `-Inf` and `NaN`; Rust's `inf` is not valid.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_use_prometheus_spellings() {
        assert_eq!(number(12.0), "12");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn samples_escape_label_values_and_families_carry_help_and_type() {
        let mut out = String::new();
        family(&mut out, "x_total", "counter", "A \\ help\nline");
        sample(&mut out, "x_total", &[("a", "q\"uote"), ("b", "2")], 3.0);
        sample(&mut out, "y", &[], 0.5);
        assert_eq!(
            out,
            "# HELP x_total A \\\\ help\\nline\n# TYPE x_total counter\nx_total{a=\"q\\\"uote\",b=\"2\"} 3\ny 0.5\n"
        );
    }
}
