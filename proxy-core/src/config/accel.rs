//! Web acceleration settings of a route: the HTTP cache (`cache = { ... }`) and response
//! compression (`compress = { ... }`), as written in the file and as resolved. Only parsing and
//! validation live here; the semantics are in `crate::cache` and `crate::compress`.

use super::units::Quantity;
use super::{err, ConfigError};
use crate::compress::{default_level, Encoding};
use serde::Deserialize;

/// `cache = { ... }` on a route, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCache {
    /// Memory for this route's cache across the whole process (split evenly across workers);
    /// default 256 MiB.
    pub max_bytes: Option<Quantity>,
    /// Larger responses are streamed through without being stored; default 8 MiB.
    pub max_object_bytes: Option<Quantity>,
    /// The response field saying what the cache did (`HIT`, `MISS`, `STALE`, `REVALIDATED`,
    /// `BYPASS`); default `X-Cache`; `""` leaves it out.
    pub status_header: Option<String>,
}

/// `compress = { ... }` on a route, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCompress {
    /// Codings offered, in server preference order; default `["br", "zstd", "gzip"]`.
    pub encodings: Option<Vec<String>>,
    /// Content types compressed (`type/subtype` or `type/*`); default text and structured
    /// text types (HTML, CSS, JavaScript, JSON, XML, SVG, plain text).
    pub types: Option<Vec<String>>,
    /// Responses with a known length below this are sent as they are; default 256 bytes.
    pub min_bytes: Option<Quantity>,
    /// gzip level 1..=9; default 5.
    pub gzip_level: Option<u32>,
    /// brotli quality 0..=11; default 4.
    pub brotli_level: Option<u32>,
    /// zstd level 1..=19; default 3.
    pub zstd_level: Option<u32>,
}

/// A route's resolved cache settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Bytes for the whole process; each worker's store gets an equal share.
    pub max_bytes: u64,
    /// Responses larger than this are not stored (they stream through).
    pub max_object_bytes: u64,
    /// Name of the cache status field added to responses, if any.
    pub status_header: Option<String>,
}

/// A route's resolved compression settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressSettings {
    /// Codings offered, in server preference order (never empty).
    pub encodings: Vec<Encoding>,
    /// Content types compressed.
    pub types: Vec<String>,
    /// Responses with a known length below this are not compressed.
    pub min_bytes: u64,
    /// gzip level.
    pub gzip_level: u32,
    /// brotli quality.
    pub brotli_level: u32,
    /// zstd level.
    pub zstd_level: u32,
}

impl CompressSettings {
    /// The level configured for `enc`, or 0 without one.
    pub fn level_for(&self, enc: Option<Encoding>) -> u32 {
        enc.map_or(0, |e| self.level(e))
    }

    /// The level configured for `enc`.
    pub fn level(&self, enc: Encoding) -> u32 {
        match enc {
            Encoding::Gzip => self.gzip_level,
            Encoding::Brotli => self.brotli_level,
            Encoding::Zstd => self.zstd_level,
        }
    }
}

/// Content types compressed when `types` is not given.
pub const DEFAULT_TYPES: [&str; 11] = [
    "text/html",
    "text/css",
    "text/plain",
    "text/xml",
    "text/javascript",
    "application/javascript",
    "application/json",
    "application/xml",
    "application/rss+xml",
    "application/wasm",
    "image/svg+xml",
];

/// Resolves `cache` of route `key` (e.g. `routes[0]`).
pub fn resolve_cache(raw: &FileCache, key: &str) -> Result<CacheSettings, ConfigError> {
    let size = |q: &Option<Quantity>, name: &str, default: u64| -> Result<u64, ConfigError> {
        match q {
            None => Ok(default),
            Some(q) => q.bytes().or_else(|m| err(format!("{key}.cache.{name}"), m)),
        }
    };
    let max_bytes = size(&raw.max_bytes, "max_bytes", 256 << 20)?;
    let max_object_bytes = size(&raw.max_object_bytes, "max_object_bytes", 8 << 20)?;
    if max_bytes == 0 {
        return err(
            format!("{key}.cache.max_bytes"),
            "must be more than 0 (leave `cache` out to disable caching)",
        );
    }
    if max_object_bytes == 0 || max_object_bytes > max_bytes {
        return err(
            format!("{key}.cache.max_object_bytes"),
            "must be more than 0 and at most max_bytes",
        );
    }
    let status_header = match raw.status_header.as_deref() {
        None => Some("X-Cache".to_owned()),
        Some("") => None,
        Some(h) if is_token(h) => Some(h.to_owned()),
        Some(_) => {
            return err(
                format!("{key}.cache.status_header"),
                "must be a header field name (letters, digits and -)",
            )
        }
    };
    Ok(CacheSettings {
        max_bytes,
        max_object_bytes,
        status_header,
    })
}

/// Resolves `compress` of route `key`.
pub fn resolve_compress(raw: &FileCompress, key: &str) -> Result<CompressSettings, ConfigError> {
    let encodings = match &raw.encodings {
        None => vec![Encoding::Brotli, Encoding::Zstd, Encoding::Gzip],
        Some(list) => {
            let mut out = Vec::new();
            for name in list {
                let Some(enc) = Encoding::from_token(name.as_bytes()) else {
                    return err(
                        format!("{key}.compress.encodings"),
                        format!("`{name}` is not one of br, zstd, gzip"),
                    );
                };
                if !out.contains(&enc) {
                    out.push(enc);
                }
            }
            if out.is_empty() {
                return err(
                    format!("{key}.compress.encodings"),
                    "must name at least one of br, zstd, gzip (leave `compress` out to disable it)",
                );
            }
            out
        }
    };
    let types = match &raw.types {
        None => DEFAULT_TYPES.iter().map(|t| (*t).to_owned()).collect(),
        Some(list) => {
            for t in list {
                let valid = t.split_once('/').is_some_and(|(a, b)| {
                    !a.is_empty() && !b.is_empty() && t.bytes().all(|c| c.is_ascii_graphic())
                });
                if !valid {
                    return err(
                        format!("{key}.compress.types"),
                        format!("`{t}` is not a media type like text/html or text/*"),
                    );
                }
            }
            list.iter().map(|t| t.to_ascii_lowercase()).collect()
        }
    };
    let min_bytes = match &raw.min_bytes {
        None => 256,
        Some(q) => q
            .bytes()
            .or_else(|m| err(format!("{key}.compress.min_bytes"), m))?,
    };
    let level = |v: Option<u32>, name: &str, enc: Encoding, range: (u32, u32)| match v {
        None => Ok(default_level(enc)),
        Some(l) if (range.0..=range.1).contains(&l) => Ok(l),
        Some(_) => err(
            format!("{key}.compress.{name}"),
            format!("must be {} to {}", range.0, range.1),
        ),
    };
    Ok(CompressSettings {
        encodings,
        types,
        min_bytes,
        gzip_level: level(raw.gzip_level, "gzip_level", Encoding::Gzip, (1, 9))?,
        brotli_level: level(raw.brotli_level, "brotli_level", Encoding::Brotli, (0, 11))?,
        zstd_level: level(raw.zstd_level, "zstd_level", Encoding::Zstd, (1, 19))?,
    })
}

/// Whether `s` is an HTTP field name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
