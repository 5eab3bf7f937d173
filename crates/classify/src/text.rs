//! Small text helpers shared by the classifiers: bounded error details,
//! identifier words, and `application/x-www-form-urlencoded` pairs.

use std::borrow::Cow;

/// The longest detail string an [`crate::graphql::Opaque`] carries, in bytes.
pub(crate) const MAX_DETAIL: usize = 200;

/// `s` cut to at most [`MAX_DETAIL`] bytes on a char boundary, with `…` when cut.
pub(crate) fn detail(s: &str) -> String {
    if s.len() <= MAX_DETAIL {
        return s.to_owned();
    }
    let mut end = MAX_DETAIL;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let head = s.get(..end).unwrap_or("");
    format!("{head}…")
}

/// Splits an identifier into lowercase words at `_`, `-`, `.`, spaces and
/// other non-alphanumerics, at lower→upper case changes (`volumeDelete`), at
/// the end of an upper-case run followed by a lower-case letter
/// (`HTTPServer` → `http`, `server`) and between letters and digits.
pub(crate) fn words(ident: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = ident.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            flush(&mut cur, &mut out);
            continue;
        }
        if let Some(&prev) = i.checked_sub(1).and_then(|p| chars.get(p)) {
            let next = chars.get(i + 1).copied();
            let boundary = (prev.is_lowercase() && c.is_uppercase())
                || (prev.is_alphabetic() && c.is_numeric())
                || (prev.is_numeric() && c.is_alphabetic())
                || (prev.is_uppercase()
                    && c.is_uppercase()
                    && next.is_some_and(char::is_lowercase));
            if boundary {
                flush(&mut cur, &mut out);
            }
        }
        cur.extend(c.to_lowercase());
    }
    flush(&mut cur, &mut out);
    out
}

fn flush(cur: &mut String, out: &mut Vec<String>) {
    if !cur.is_empty() {
        out.push(std::mem::take(cur));
    }
}

/// One `name=value` pair of a query string or form body, percent-decoded
/// with `+` read as a space. The value stays bytes: it may not be UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pair {
    /// The decoded name (lossy UTF-8: names are only compared to ASCII words).
    pub(crate) name: String,
    /// The decoded value; `None` when the pair had no `=`.
    pub(crate) value: Option<Vec<u8>>,
}

/// The pairs of a query string (a leading `?` is ignored), split at every
/// character of `seps`; empty pieces are skipped.
pub(crate) fn form_pairs(qs: &str, seps: &[char]) -> Vec<Pair> {
    let qs = qs.strip_prefix('?').unwrap_or(qs);
    qs.split(|c| seps.contains(&c))
        .filter(|piece| !piece.is_empty())
        .map(|piece| match piece.split_once('=') {
            Some((n, v)) => Pair {
                name: String::from_utf8_lossy(&form_decode(n)).into_owned(),
                value: Some(form_decode(v)),
            },
            None => Pair {
                name: String::from_utf8_lossy(&form_decode(piece)).into_owned(),
                value: None,
            },
        })
        .collect()
}

/// Percent-decodes `s` after reading `+` as a space. A `%` not followed by
/// two hex digits stays as it is (as `application/x-www-form-urlencoded`
/// parsers do).
pub(crate) fn form_decode(s: &str) -> Vec<u8> {
    let spaced: Cow<'_, str> = if s.contains('+') {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    percent_encoding::percent_decode_str(&spaced).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn words_split_camel_snake_kebab_and_acronyms() {
        assert_eq!(words("volumeDelete"), ["volume", "delete"]);
        assert_eq!(words("delete_volume"), ["delete", "volume"]);
        assert_eq!(words("delete-volume"), ["delete", "volume"]);
        assert_eq!(words("HTTPServerReset"), ["http", "server", "reset"]);
        assert_eq!(words("DELETEUser"), ["delete", "user"]);
        assert_eq!(words("v2Delete"), ["v", "2", "delete"]);
        assert_eq!(words("__typename"), ["typename"]);
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words("volumedelete"), ["volumedelete"]);
    }

    #[test]
    fn detail_is_bounded_on_a_char_boundary() {
        let long = "é".repeat(300);
        let d = detail(&long);
        assert!(d.len() <= MAX_DETAIL + '…'.len_utf8());
        assert!(d.ends_with('…'));
        assert_eq!(detail("short"), "short");
    }

    #[test]
    fn form_pairs_decode_names_and_values() {
        let pairs = form_pairs("?q%75ery=a+b%20c&flag&&x=%zz", &['&']);
        assert_eq!(
            pairs,
            [
                Pair {
                    name: "query".into(),
                    value: Some(b"a b c".to_vec())
                },
                Pair {
                    name: "flag".into(),
                    value: None
                },
                Pair {
                    name: "x".into(),
                    value: Some(b"%zz".to_vec())
                },
            ]
        );
    }
}
