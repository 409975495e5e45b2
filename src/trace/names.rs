//! Which file names a worker may upload: relative paths of a few plain components, nothing that escapes the task
//! folder or overwrites what the server writes.

use std::path::PathBuf;

use super::{ATTEMPTS_DIR, INPUT_FILE, OUTPUT_FILE};
use crate::error::{Error, Result};

/// Directory levels below the task folder, the file included.
pub const MAX_DEPTH: usize = 4;
const MAX_COMPONENT_CHARS: usize = 128;
const MAX_NAME_BYTES: usize = 255;

/// Checks a trace file name and returns it as a relative path.
pub fn validate_file_name(name: &str) -> Result<PathBuf> {
    let refuse = |rule: &str| Err(Error::invalid("file", format!("{rule}, got {name:?}")));
    if name.is_empty() {
        return Err(Error::invalid("file", "is required"));
    }
    if name.len() > MAX_NAME_BYTES {
        return refuse("must be at most 255 bytes");
    }
    if name.starts_with('/') {
        return refuse("must be a relative path");
    }
    let components: Vec<&str> = name.split('/').collect();
    if components.len() > MAX_DEPTH {
        return refuse("must be at most 4 levels deep");
    }
    for component in &components {
        if *component == ".." || *component == "." {
            return refuse("must not contain '.' or '..' components");
        }
        if component.is_empty() {
            return refuse("must not contain empty components");
        }
        if component.starts_with('.') {
            return refuse("must not contain hidden components (starting with '.')");
        }
        if component.chars().count() > MAX_COMPONENT_CHARS {
            return refuse("components must be at most 128 characters");
        }
        if !component.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return refuse("may only use letters, digits, '.', '_', '-' and '/'");
        }
    }
    if components[0] == INPUT_FILE || components[0] == OUTPUT_FILE {
        return refuse("is written by the server");
    }
    if components[0] == ATTEMPTS_DIR {
        return refuse("must not be inside attempts/, which keeps earlier attempts");
    }
    Ok(components.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_relative_names() {
        for name in ["log.txt", "reports/lint.json", "a/b/c/d.txt", "x-1_y.2"] {
            assert!(validate_file_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_escapes_and_reserved_names() {
        for name in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./log.txt",
            "a//b",
            ".hidden",
            "a/b/c/d/e",
            "sp ace",
            "back\\slash",
            "nul\0",
            "input.json",
            "output.json",
            "attempts/1/log.txt",
            "output.json/x",
            "input.json/x",
            "é.txt",
        ] {
            assert!(validate_file_name(name).is_err(), "{name:?}");
        }
    }
}
