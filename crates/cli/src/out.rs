//! Printing: JSON for machines, plain text for people, quiet on a broken pipe.

use std::io::Write;

use serde::Serialize;

/// Prints a value as pretty JSON on stdout.
pub(crate) fn json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    // Serialise first, so a closed pipe shows up as the I/O error it is.
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    std::io::stdout().lock().write_all(s.as_bytes())?;
    Ok(())
}

/// Prints text on stdout.
pub(crate) fn text(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())?;
    if !s.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Whether the error chain ends in a broken pipe (`blastwall … | head`).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Replaces control characters so a terminal shows them instead of obeying them.
pub(crate) fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
