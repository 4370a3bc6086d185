//! Cache keys (RFC 9111 §2 and §4.1): the primary key built from scheme, host and request
//! target, the list of header names a response varies on, and the secondary key built from a
//! request's values for those names.
//!
//! Keys are byte strings appended to a caller-owned buffer, so a lookup reuses one buffer and
//! allocates nothing once it has grown. Every key is injective: fields are separated by NUL and
//! any NUL or 0x01 byte inside a field is escaped, so two different inputs never share a key.
//! This file does not hash or store keys (that is the store's job).

/// Appends the primary cache key: scheme, host (lowercased, as given, port kept), and the
/// path with query, separated so no two different (scheme, host, target) give the same key
/// ("https\0example.com\0/a?b"). Never the path alone.
///
/// The scheme and host are ASCII-lowercased (both are case-insensitive, RFC 3986 §6.2.2.1);
/// the target is kept byte for byte (paths and queries are case-sensitive). A default port is
/// not removed: `example.com` and `example.com:443` are different keys.
pub fn primary_key(scheme: &[u8], host: &[u8], target: &[u8], out: &mut Vec<u8>) {
    push_escaped(scheme, true, out);
    out.push(0);
    push_escaped(host, true, out);
    out.push(0);
    // Last field: nothing follows it, so it needs no escaping.
    out.extend_from_slice(target);
}

/// A response's `Vary` field lists `*`: it can never be matched (RFC 9111 §4.1), so it is not
/// stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaryStar;

/// The header names listed by Vary fields, lowercased, deduplicated, in sorted order;
/// Err(VaryStar) if `*` appears.
///
/// Empty list elements are skipped (RFC 9110 §5.6.1); no Vary field gives an empty list.
pub fn vary_names<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<String>, VaryStar> {
    let mut names = Vec::new();
    for value in values {
        for element in value.split(|&b| b == b',') {
            let name = element.trim_ascii();
            if name.is_empty() {
                continue;
            }
            if name == b"*" {
                return Err(VaryStar);
            }
            names.push(String::from_utf8_lossy(name).to_ascii_lowercase());
        }
    }
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// Appends the secondary key of a request for `names` (RFC 9111 §4.1): for each name, in the
/// order given, the request's values of that field joined as one list and normalised.
///
/// Normalisation, chosen to be simple and deterministic: field lines are joined with ", ";
/// whitespace around commas and at the ends is dropped, runs of spaces and tabs inside an
/// element become one space, empty list elements are dropped, and quoted strings are kept
/// verbatim. Case is kept, except for `accept-encoding`, whose value is lowercased
/// (content-coding names are case-insensitive, RFC 9110 §8.4.1); its list is not reordered.
/// An absent field and a present but empty one give different keys. `field(name)` yields the
/// request's values for a lowercase name; the iterator it returns may borrow that name.
pub fn secondary_key<'n, 'a, F, I>(names: &'n [String], field: F, out: &mut Vec<u8>)
where
    F: Fn(&'n str) -> I,
    I: Iterator<Item = &'a [u8]>,
{
    for name in names {
        push_escaped(name.as_bytes(), false, out);
        out.push(0);
        let lowercase = name == "accept-encoding";
        let mut lines = field(name).peekable();
        if lines.peek().is_none() {
            out.push(ABSENT);
            continue;
        }
        out.push(PRESENT);
        let mut first_element = true;
        for line in lines {
            push_normalised_list(line, lowercase, &mut first_element, out);
        }
        out.push(0);
    }
}

/// Marks a Vary-listed field the request did not send.
const ABSENT: u8 = b'-';
/// Marks a Vary-listed field the request sent; its normalised value and a NUL follow.
const PRESENT: u8 = b'=';

/// Appends one field line's list elements, normalised, each preceded by ", " unless it is the
/// first element of the whole field.
fn push_normalised_list(line: &[u8], lowercase: bool, first_element: &mut bool, out: &mut Vec<u8>) {
    let mut in_quotes = false;
    let mut element_started = false;
    let mut space_pending = false;
    let mut bytes = line.iter();
    while let Some(&b) = bytes.next() {
        if in_quotes {
            push_byte(b, lowercase, out);
            if b == b'\\' {
                if let Some(&escaped) = bytes.next() {
                    push_byte(escaped, lowercase, out);
                }
            } else if b == b'"' {
                in_quotes = false;
            }
            continue;
        }
        match b {
            b',' => {
                element_started = false;
                space_pending = false;
            }
            b' ' | b'\t' => space_pending = element_started,
            _ => {
                if !element_started {
                    if !*first_element {
                        out.extend_from_slice(b", ");
                    }
                    *first_element = false;
                    element_started = true;
                } else if space_pending {
                    out.push(b' ');
                }
                space_pending = false;
                in_quotes = b == b'"';
                push_byte(b, lowercase, out);
            }
        }
    }
}

fn push_escaped(field: &[u8], lowercase: bool, out: &mut Vec<u8>) {
    for &b in field {
        push_byte(b, lowercase, out);
    }
}

/// Appends one byte of a key field: NUL becomes 0x01 0x01 and 0x01 becomes 0x01 0x02, so a
/// field never contains the NUL that separates fields.
fn push_byte(b: u8, lowercase: bool, out: &mut Vec<u8>) {
    match b {
        0 => out.extend_from_slice(&[1, 1]),
        1 => out.extend_from_slice(&[1, 2]),
        _ if lowercase => out.push(b.to_ascii_lowercase()),
        _ => out.push(b),
    }
}

#[cfg(test)]
mod tests;
