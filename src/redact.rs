//! Hiding secrets in anything hodometer prints or logs: URL credentials and queries, tokens.
//! A leaf module, so configuration errors, logs, the inspector and `collect --publish` all use
//! the same rules.
//!
//! The rules err on the side of hiding too much: an error message that names the setting and
//! the problem is still useful with part of the value hidden, a leaked password is not undone.

/// What stands in for a hidden part.
pub const REDACTED: &str = "REDACTED";

/// `text` (a URL, a comma-separated list of URLs, or something meant to be one) as it may be
/// shown: credentials and query strings hidden; scheme, host, port and path kept.
///
/// - Userinfo: everything from just after the first `://` (or the start, when there is none) up
///   to the **last** `@` becomes `REDACTED`, so a password holding `@`, `,`, `/`, `?`, `#` or even
///   `://` stays hidden (in a list, the items before the last credentials are hidden with it).
/// - Query and fragment: everything from the first `?` or `#` to the end becomes `?REDACTED`
///   (`#REDACTED`), since a query value may itself hold commas.
pub fn url_text(text: &str) -> String {
    let without_userinfo = match text.rfind('@') {
        Some(at) => {
            let start = text
                .find("://")
                .map(|i| i + 3)
                .filter(|&start| start <= at)
                .unwrap_or(0);
            format!("{}{REDACTED}{}", &text[..start], &text[at..])
        }
        None => text.to_string(),
    };
    match without_userinfo.find(['?', '#']) {
        Some(cut) => {
            let mark = &without_userinfo[cut..=cut];
            format!("{}{mark}{REDACTED}", &without_userinfo[..cut])
        }
        None => without_userinfo,
    }
}

/// How a secret value (a token, key material) is shown: never any part of it.
pub fn secret(text: &str) -> String {
    if text.is_empty() {
        "(empty)".into()
    } else {
        format!("({REDACTED}, {} characters)", text.chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every secret of every hostile input is absent from its redaction, and what is safe to
    /// show (scheme, host, port, path) stays.
    #[test]
    fn urls_keep_their_address_and_lose_every_secret() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("https://h:8080/p", &[], "https://h:8080/p"),
            ("https://tok@h/p", &["tok"], "https://REDACTED@h/p"),
            ("u:p@h/p", &["u:p"], "REDACTED@h/p"),
            ("http://u:p#/?@h", &["u:p"], "http://REDACTED@h"),
            (
                "http://user:pa://ss@host/x",
                &["user", "pa", "ss@"],
                "http://REDACTED@host/x",
            ),
            (
                "http://u:a@b@c@h/",
                &["u:a", "b@", "c@h"],
                "http://REDACTED@h/",
            ),
            (
                "https://h/p?api_key=s3cret",
                &["api_key", "s3cret"],
                "https://h/p?REDACTED",
            ),
            (
                "https://h/p?k=a,b,c",
                &["k=", "a,b"],
                "https://h/p?REDACTED",
            ),
            (
                "https://h/p#tok=s3cret",
                &["s3cret"],
                "https://h/p#REDACTED",
            ),
            (
                "http://h1/,https://bob:pa,ss@h2/p?q=1",
                &["bob", "pa,ss", "q=1"],
                "http://REDACTED@h2/p?REDACTED",
            ),
            (
                "ftp://carol:pw\u{0}\n@h3",
                &["carol", "pw"],
                "ftp://REDACTED@h3",
            ),
            ("not a url", &[], "not a url"),
            ("", &[], ""),
        ];
        for (input, secrets, expected) in cases {
            let shown = url_text(input);
            assert_eq!(&shown, expected, "for {input:?}");
            for secret in *secrets {
                assert!(
                    !shown.contains(secret),
                    "{secret:?} leaked from {input:?}: {shown}"
                );
            }
        }
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        assert_eq!(
            url_text("https://ü:ö@hé/ß?ä"),
            "https://REDACTED@hé/ß?REDACTED"
        );
        assert_eq!(url_text("@"), "REDACTED@");
        assert_eq!(url_text("?"), "?REDACTED");
    }

    #[test]
    fn secrets_show_only_their_length() {
        assert_eq!(secret("e943e8a2"), "(REDACTED, 8 characters)");
        assert_eq!(secret(""), "(empty)");
        assert!(!secret("top secret token").contains("secret t"));
    }
}
