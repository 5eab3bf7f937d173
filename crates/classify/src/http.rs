//! HTTP method semantics, including the method-override headers some
//! frameworks honour (so a `POST` with `X-HTTP-Method-Override: DELETE` is
//! treated as the `DELETE` it may become upstream).
//!
//! The labels of a request are the union of the labels of its method and of
//! every override it carries: the proxy cannot know whether the upstream
//! honours the header, so it assumes it does.

use crate::text;
use crate::{Label, Labels};

/// Header names (compared case-insensitively) that frameworks read as "use
/// this method instead".
pub const OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Query or form parameter names that frameworks (Rails, Laravel, Symfony,
/// Express `method-override`) read as "use this method instead" on a POST.
pub const OVERRIDE_PARAMS: &[&str] = &["_method"];

/// The method of a request and what it may become upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodInfo {
    /// The request method, upper-cased.
    pub method: String,
    /// The methods named by override headers, upper-cased, in header order
    /// (each comma-separated value and each repeated header counts).
    pub overrides: Vec<String>,
    /// The union of [`method_labels`] of the method and of every override.
    pub labels: Labels,
}

/// The method of a request and its overrides, read from `headers` (name,
/// value pairs; names compared case-insensitively, see
/// [`OVERRIDE_HEADERS`]). Empty override values are ignored.
pub fn method_info(method: &str, headers: &[(String, String)]) -> MethodInfo {
    let method = method.to_ascii_uppercase();
    let overrides: Vec<String> = headers
        .iter()
        .filter(|(name, _)| {
            OVERRIDE_HEADERS
                .iter()
                .any(|h| name.trim().eq_ignore_ascii_case(h))
        })
        .flat_map(|(_, value)| split_methods(value))
        .collect();
    let labels = overrides
        .iter()
        .fold(method_labels(&method), |acc, m| acc.union(method_labels(m)));
    MethodInfo {
        method,
        overrides,
        labels,
    }
}

/// The methods named by override parameters ([`OVERRIDE_PARAMS`]) in a query
/// string or an `application/x-www-form-urlencoded` body, upper-cased. A
/// proxy should add their [`method_labels`] to a POST's, as it does for
/// override headers.
pub fn param_overrides(form: &str) -> Vec<String> {
    text::form_pairs(form, &['&', ';'])
        .into_iter()
        .filter(|p| OVERRIDE_PARAMS.contains(&p.name.as_str()))
        .filter_map(|p| p.value)
        .flat_map(|v| split_methods(&String::from_utf8_lossy(&v)))
        .collect()
}

fn split_methods(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The labels of an HTTP method (compared case-insensitively):
/// `GET`, `HEAD`, `OPTIONS`, `TRACE` → `read`; `POST`, `PUT`, `PATCH` →
/// `write`; `DELETE` → `write` + `destructive`; anything else, including
/// `CONNECT`, WebDAV methods and tokens never seen before → `write`.
pub fn method_labels(method: &str) -> Labels {
    let m = method.to_ascii_uppercase();
    match m.as_str() {
        "GET" | "HEAD" | "OPTIONS" | "TRACE" => Labels::of(&[Label::Read]),
        "DELETE" => Labels::of(&[Label::Write, Label::Destructive]),
        _ => Labels::of(&[Label::Write]),
    }
}

/// Whether `s` is a valid method: a non-empty RFC 9110 `token` (visible
/// ASCII but no delimiters: `"(),/:;<=>?@[\]{}`).
pub fn is_valid_method(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn h(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn method_labels_table() {
        for m in ["GET", "get", "HEAD", "OPTIONS", "TRACE"] {
            assert_eq!(method_labels(m), Labels::of(&[Label::Read]), "{m}");
        }
        for m in ["POST", "PUT", "PATCH", "CONNECT", "PROPFIND", "BREW", ""] {
            assert_eq!(method_labels(m), Labels::of(&[Label::Write]), "{m}");
        }
        assert_eq!(
            method_labels("delete"),
            Labels::of(&[Label::Write, Label::Destructive])
        );
    }

    #[test]
    fn overrides_are_read_from_every_header_and_value() {
        let info = method_info(
            "post",
            &[
                h("Content-Type", "application/json"),
                h("X-HTTP-Method-Override", "put, delete"),
                h("x-method-override", "PATCH"),
                h("X-Http-Method", " "),
            ],
        );
        assert_eq!(info.method, "POST");
        assert_eq!(info.overrides, ["PUT", "DELETE", "PATCH"]);
        assert_eq!(info.labels, Labels::of(&[Label::Write, Label::Destructive]));
    }

    #[test]
    fn a_get_overridden_to_delete_is_destructive() {
        let info = method_info("GET", &[h("x-http-method", "DELETE")]);
        assert_eq!(
            info.labels,
            Labels::of(&[Label::Read, Label::Write, Label::Destructive])
        );
    }

    #[test]
    fn no_override_keeps_the_method_labels() {
        let info = method_info("GET", &[h("X-Other", "DELETE")]);
        assert!(info.overrides.is_empty());
        assert_eq!(info.labels, Labels::of(&[Label::Read]));
    }

    #[test]
    fn param_overrides_are_found() {
        assert_eq!(param_overrides("a=1&_method=delete"), ["DELETE"]);
        assert_eq!(
            param_overrides("_method=put;_method=patch"),
            ["PUT", "PATCH"]
        );
        assert!(param_overrides("method=delete").is_empty());
    }

    #[test]
    fn tokens() {
        assert!(is_valid_method("GET"));
        assert!(is_valid_method("M-SEARCH"));
        assert!(is_valid_method("x!#$%&'*+-.^_`|~9"));
        assert!(!is_valid_method(""));
        assert!(!is_valid_method("GE T"));
        assert!(!is_valid_method("GET\r\n"));
        assert!(!is_valid_method("GET/"));
        assert!(!is_valid_method("DÉLETE"));
    }
}
