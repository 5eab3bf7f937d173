//! Content codings decoded for inspection (gzip, deflate, br), bounded
//! against decompression bombs.

use std::io::Read;

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// A coding the proxy does not decode.
    Unsupported(String),
    /// The coded data is corrupt.
    Corrupt(String),
    /// The decoded body is larger than the bound.
    TooLarge,
}

/// Decodes `body` as the `Content-Encoding` values list it (applied in
/// order, so decoded in reverse). At most `max` decoded bytes.
pub(crate) fn decode<'a>(
    encodings: impl Iterator<Item = &'a str>,
    body: &[u8],
    max: usize,
) -> Result<Option<Vec<u8>>, DecodeError> {
    let codings: Vec<String> = encodings
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "identity")
        .collect();
    if codings.is_empty() {
        return Ok(None);
    }
    let mut cur = body.to_vec();
    for c in codings.iter().rev() {
        cur = match c.as_str() {
            "gzip" | "x-gzip" => bounded(flate2::read::MultiGzDecoder::new(&cur[..]), max)?,
            "deflate" => {
                // `deflate` means zlib-wrapped; some senders send raw deflate.
                match bounded(flate2::read::ZlibDecoder::new(&cur[..]), max) {
                    Ok(v) => v,
                    Err(DecodeError::Corrupt(_)) => {
                        bounded(flate2::read::DeflateDecoder::new(&cur[..]), max)?
                    }
                    Err(e) => return Err(e),
                }
            }
            "br" => bounded(brotli_decompressor::Decompressor::new(&cur[..], 4096), max)?,
            other => return Err(DecodeError::Unsupported(other.to_owned())),
        };
    }
    Ok(Some(cur))
}

fn bounded(r: impl Read, max: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    r.take(limit)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if out.len() > max {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}
