//! Putting bytes that may not be UTF-8 (paths, argv, environment values) into
//! a record's `data`, and getting them back exactly.
//!
//! The encoding is unambiguous because the two cases have different JSON
//! types:
//!
//! - bytes that are valid UTF-8 become a JSON **string** holding that text;
//! - any other bytes become a JSON **object** with the single member `"hex"`,
//!   whose value is the bytes as lowercase hex, two digits per byte:
//!   `{"hex":"666f80"}` for `b"fo\x80"`.
//!
//! A file literally named `{"hex":"00"}` is valid UTF-8 and so is written as
//! the string `"{\"hex\":\"00\"}"`; only an object is ever decoded as hex.
//! Hex rather than base64 because such names are rare, hex needs no extra
//! dependency, and a human can read it next to `xxd` output.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The member name used for bytes that are not UTF-8.
pub const HEX_KEY: &str = "hex";

/// Encodes `bytes` as a JSON string if they are UTF-8, else as `{"hex": "…"}`.
pub fn bytes_to_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => {
            let mut map = Map::with_capacity(1);
            map.insert(HEX_KEY.to_owned(), Value::String(hex::encode(bytes)));
            Value::Object(map)
        }
    }
}

/// Decodes a value written by [`bytes_to_json`]: a string gives its UTF-8
/// bytes, an object with exactly one member `"hex"` holding an even number of
/// lowercase hex digits gives those bytes. Anything else is `None`.
pub fn bytes_from_json(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::String(text) => Some(text.as_bytes().to_vec()),
        Value::Object(map) if map.len() == 1 => {
            let digits = map.get(HEX_KEY)?.as_str()?;
            let lowercase = digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !lowercase {
                return None;
            }
            hex::decode(digits).ok()
        }
        _ => None,
    }
}

/// Encodes an OS string (an argv element, an environment value) with
/// [`bytes_to_json`].
pub fn os_str_to_json(text: &OsStr) -> Value {
    bytes_to_json(text.as_bytes())
}

/// Decodes a value written by [`os_str_to_json`].
pub fn os_string_from_json(value: &Value) -> Option<OsString> {
    bytes_from_json(value).map(OsString::from_vec)
}

/// Encodes a path with [`bytes_to_json`].
pub fn path_to_json(path: &Path) -> Value {
    os_str_to_json(path.as_os_str())
}

/// Decodes a value written by [`path_to_json`].
pub fn path_from_json(value: &Value) -> Option<PathBuf> {
    os_string_from_json(value).map(PathBuf::from)
}

/// Encodes an argument vector as a JSON array, each element with
/// [`os_str_to_json`].
pub fn argv_to_json<I, S>(argv: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Value::Array(
        argv.into_iter()
            .map(|arg| os_str_to_json(arg.as_ref()))
            .collect(),
    )
}

/// Decodes a value written by [`argv_to_json`]; `None` if it is not an array
/// or any element does not decode.
pub fn argv_from_json(value: &Value) -> Option<Vec<OsString>> {
    value.as_array()?.iter().map(os_string_from_json).collect()
}
