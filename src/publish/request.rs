//! Publish endpoints and the exact request URL sent to them, as the
//! original sends it.
//!
//! An endpoint is validated once, when configuration is read, so building a request can never
//! fail: `<url>/track?data=<percent-encoded standard base64 of the event JSON>&verbose=1&ip=0`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;

/// A validated publish endpoint: an `http` or `https` URL with a host, an optional path prefix
/// and no query or fragment.
///
/// `Display` and `Debug` show the URL with any `user:password` replaced by `REDACTED`, so an
/// endpoint can be logged or shown without leaking credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `<url>/track`, credentials included (reqwest turns them into basic auth).
    track: Url,
    /// The endpoint as given, credentials redacted.
    display: String,
}

impl Endpoint {
    /// The endpoint as it may be shown and logged: credentials redacted.
    pub fn redacted(&self) -> &str {
        &self.display
    }

    /// The request URL that carries `event_json`, as the original sends it. Contains the event
    /// and any credentials: never log it.
    pub fn track_url(&self, event_json: &str) -> Url {
        let mut url = self.track.clone();
        // `append_pair` form-encodes, which percent-encodes every base64 `+`, `/` and `=`; base64
        // never contains a space, the one character form encoding does not percent-encode.
        url.query_pairs_mut()
            .append_pair("data", &STANDARD.encode(event_json))
            .append_pair("verbose", "1")
            .append_pair("ip", "0");
        url
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Endpoint").field(&self.display).finish()
    }
}

/// Parses one publish URL (`PUBLISH_URL`, or one `EXTRA_PUBLISH_URLS` item).
///
/// Accepts `http` and `https` URLs with a host and an optional path prefix (`/track` is
/// appended, with or without a trailing `/`). A query or fragment is rejected rather than
/// guessed at: the original concatenated `/track?data=…` after the whole URL, which turned any
/// query into garbage. The error text never repeats the URL, which may hold a password.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("expected an http:// or https:// URL, got nothing".into());
    }
    let url = Url::parse(text).map_err(|e| {
        if text.contains("://") {
            format!("not a valid URL ({e})")
        } else {
            "expected an absolute URL with a scheme, such as https://host:port/path".to_string()
        }
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported scheme {:?}: expected http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if url.query().is_some() {
        return Err(
            "the URL must not carry a query (`?…`): hodometer appends /track?data=… itself".into(),
        );
    }
    if url.fragment().is_some() {
        return Err("the URL must not carry a fragment (`#…`)".into());
    }

    let mut track = url.clone();
    // http(s) URLs always have a path to push onto; the fallback only keeps this infallible.
    if let Ok(mut segments) = track.path_segments_mut() {
        segments.pop_if_empty().push("track");
    }
    Ok(Endpoint {
        track,
        display: crate::redact::url_text(url.as_str()),
    })
}

/// Parses the comma-separated `EXTRA_PUBLISH_URLS` list. Items are trimmed and empty items are
/// ignored (so `a,,b,` and the empty string are fine); every bad item is reported, by position.
pub fn parse_endpoint_list(text: &str) -> Result<Vec<Endpoint>, String> {
    let mut endpoints = Vec::new();
    let mut problems = Vec::new();
    let items = text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty());
    for (index, item) in items.enumerate() {
        match parse_endpoint(item) {
            Ok(endpoint) => endpoints.push(endpoint),
            Err(problem) => problems.push(format!("item {}: {problem}", index + 1)),
        }
    }
    if problems.is_empty() {
        Ok(endpoints)
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(text: &str) -> String {
        parse_endpoint(text)
            .expect("valid endpoint")
            .track_url("{}")
            .path()
            .to_string()
    }

    #[test]
    fn track_is_appended_to_any_path_prefix() {
        assert_eq!(path_of("http://h:8080"), "/track");
        assert_eq!(path_of("http://h:8080/"), "/track");
        assert_eq!(path_of("http://h:8080/prefix"), "/prefix/track");
        assert_eq!(path_of("http://h:8080/prefix/"), "/prefix/track");
        assert_eq!(path_of("https://h/a/b/"), "/a/b/track");
    }

    #[test]
    fn the_query_is_data_verbose_ip_with_percent_encoded_standard_base64() {
        // U+FFFF is EF BF BF in UTF-8, which base64 writes as `77+/`; the `a` adds `=` padding.
        let json = "\u{ffff}a";
        let b64 = STANDARD.encode(json);
        assert!(
            b64.contains('+') && b64.contains('/') && b64.contains('='),
            "{b64}"
        );
        let url = parse_endpoint("http://h/p").expect("valid").track_url(json);
        let expected = format!(
            "data={}&verbose=1&ip=0",
            b64.replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D")
        );
        assert_eq!(url.query(), Some(expected.as_str()));
    }

    #[test]
    fn credentials_are_kept_for_the_request_and_redacted_for_display() {
        let endpoint = parse_endpoint("https://user:s3cret@h/p").expect("valid");
        assert_eq!(endpoint.redacted(), "https://REDACTED@h/p");
        assert_eq!(endpoint.to_string(), "https://REDACTED@h/p");
        assert!(!format!("{endpoint:?}").contains("s3cret"));
        let url = endpoint.track_url("{}");
        assert_eq!(url.username(), "user");
        assert_eq!(url.password(), Some("s3cret"));
        let token_only = parse_endpoint("https://tok@h").expect("valid");
        assert_eq!(token_only.redacted(), "https://REDACTED@h/");
    }

    #[test]
    fn bad_endpoints_are_rejected_with_the_reason_and_without_the_secret() {
        let cases = [
            ("", "got nothing"),
            ("hodometer.seldon.io", "absolute URL"),
            ("ftp://h/x", "unsupported scheme \"ftp\""),
            ("file:///tmp/x", "unsupported scheme"),
            ("http://", "not a valid URL"),
            ("http://u:pw@h/x?a=1", "must not carry a query"),
            ("http://h/x#frag", "fragment"),
            ("http://h:99999/", "not a valid URL"),
        ];
        for (text, needle) in cases {
            let problem = parse_endpoint(text).expect_err(text);
            assert!(problem.contains(needle), "{text:?}: {problem}");
            assert!(!problem.contains("pw"), "{text:?} leaked: {problem}");
        }
    }

    #[test]
    fn endpoint_lists_trim_skip_empty_items_and_report_each_bad_one() {
        assert_eq!(parse_endpoint_list(""), Ok(vec![]));
        let good = parse_endpoint_list(" http://a/ ,, https://b:8443/x ,").expect("valid list");
        let shown: Vec<&str> = good.iter().map(Endpoint::redacted).collect();
        assert_eq!(shown, ["http://a/", "https://b:8443/x"]);

        let problem = parse_endpoint_list("http://a, ftp://b, ,nope").expect_err("two bad items");
        assert!(problem.contains("item 2: unsupported scheme"), "{problem}");
        assert!(
            problem.contains("item 3: expected an absolute URL"),
            "{problem}"
        );
        assert!(!problem.contains("item 1"), "{problem}");
    }
}
