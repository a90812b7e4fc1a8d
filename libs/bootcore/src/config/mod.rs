//! `limine.conf` parsing (v8+ syntax) and boot entry selection.
//!
//! Accepted: `key: value` lines (keys case-insensitive, value to end of line), `#` comment
//! lines, `/Entry`, `//Sub entry` (deeper nesting), `/+Entry` (directory expanded by
//! default), globals before the first entry, `${NAME}=value` macro definitions and the
//! built-ins `${ARCH}` and `${FW_TYPE}`. Options of entries whose protocol is not `limine`
//! are kept unparsed; only `limine` entries are validated strictly. Paths may only use the
//! `boot()` / `boot(N)` resources since the loader reads nothing but its own ESP.

use alloc::{string::String, vec::Vec};
use core::fmt;

/// Config file locations to try, in order (newest Limine order on EFI; v8 order reversed).
pub const SEARCH_PATHS: [&str; 5] = [
    "/EFI/BOOT/limine.conf",
    "/boot/limine/limine.conf",
    "/boot/limine.conf",
    "/limine/limine.conf",
    "/limine.conf",
];

/// Longest value accepted (newer Limine truncates at 4095 characters; we refuse instead).
pub const MAX_VALUE_LEN: usize = 4095;

/// Parsed configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Auto-boot timeout.
    pub timeout: Timeout,
    /// 1-based index of the default entry. It counts every entry in file order, directories
    /// and sub-entries included.
    pub default_entry: usize,
    /// `serial: yes`.
    pub serial: bool,
    /// `verbose: yes`.
    pub verbose: bool,
    /// `quiet: yes`.
    pub quiet: bool,
    /// `evergreen_strict: yes`: Evergreen's loader makes, wherever the Limine protocol leaves
    /// a choice open, the one least convenient for the kernel (see `loader/README.md`).
    /// Real Limine ignores the option.
    pub strict: bool,
    /// `evergreen_slots: yes`: Evergreen's loader boots the kernel and initramfs of the A/B
    /// update slot `libs/update` chooses (boot counting and rollback), with the entry's
    /// options and command line. Real Limine ignores the option.
    pub slots: bool,
    /// Every entry in file order; `depth` gives the nesting.
    pub entries: Vec<Entry>,
}

/// When to boot the default entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// `timeout: no`: wait for the user forever.
    Never,
    /// Boot after this many milliseconds (0 = immediately; capped at 9999 s).
    Millis(u64),
}

/// One menu entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Title after the slashes (trimmed).
    pub title: String,
    /// 1 for `/Title`, 2 for `//Title`, ...
    pub depth: usize,
    /// `/+Title`: directory expanded by default.
    pub expanded: bool,
    /// Line of the title (1-based).
    pub line: usize,
    /// Followed by deeper entries: a directory, not bootable.
    pub directory: bool,
    /// `comment`.
    pub comment: Option<String>,
    /// `protocol`, lower-cased; `None` for directories and entries without one.
    pub protocol: Option<String>,
    /// Settings of a `protocol: limine` entry; `None` for any other entry.
    pub limine: Option<LimineEntry>,
}

/// Options of a `protocol: limine` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct LimineEntry {
    /// `path` / `kernel_path`.
    pub path: Option<Path>,
    /// `cmdline` / `kernel_cmdline` (empty if absent).
    pub cmdline: String,
    /// `module_path` entries in order, with their strings.
    pub modules: Vec<Module>,
    /// `kaslr` (default no).
    pub kaslr: bool,
    /// `randomise_hhdm_base` / `randomize_hhdm_base`; `None` means "follow `kaslr`".
    pub randomise_hhdm_base: Option<bool>,
    /// `resolution`.
    pub resolution: Option<Resolution>,
    /// `paging_mode`.
    pub paging_mode: Option<PagingMode>,
    /// `max_paging_mode`.
    pub max_paging_mode: Option<PagingMode>,
    /// `min_paging_mode`.
    pub min_paging_mode: Option<PagingMode>,
    /// `dtb_path` (accepted, unused on x86-64).
    pub dtb_path: Option<Path>,
}

impl LimineEntry {
    /// Whether the HHDM base is randomised (`randomise_hhdm_base`, defaulting to `kaslr`).
    pub fn randomise_hhdm(&self) -> bool {
        self.randomise_hhdm_base.unwrap_or(self.kaslr)
    }
}

/// A module to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Where it is.
    pub path: Path,
    /// `module_string` / `module_cmdline` (empty if absent).
    pub string: String,
}

/// A `boot():/path` or `boot(N):/path` file reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// `Some(N)` for `boot(N)`; `None` for `boot()` (the partition holding the config).
    pub partition: Option<u32>,
    /// Absolute path on that partition, leading `/`, `/` separators.
    pub path: String,
    /// Hash from a `#<hex>` suffix, lower-cased (128 hex digits BLAKE2b, or 64/256 BLAKE3).
    pub hash: Option<String>,
}

/// `resolution: WxH[xBPP]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bits per pixel, if given.
    pub bpp: Option<u32>,
}

/// `4level` / `5level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PagingMode {
    /// 4-level paging.
    Level4,
    /// 5-level paging.
    Level5,
}

/// A config problem, with the 1-based line it is on (0 when it concerns the whole file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line number; 0 if no single line is at fault.
    pub line: usize,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

/// What is wrong with a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// A line that is neither a comment, an entry title, a macro nor `key: value`.
    Syntax(String),
    /// An option name this parser does not know.
    UnknownOption(String),
    /// An option value that does not parse.
    BadValue {
        /// The option.
        key: String,
        /// The value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A resource other than `boot()` / `boot(N)` (the whole `resource(arg)` text).
    UnknownResource(String),
    /// A `$`-prefixed (gzip-compressed) path; decompression is not implemented.
    CompressedPath(String),
    /// A malformed `resource(arg):/path`.
    BadPath(String),
    /// `${NAME}` without definition.
    UndefinedMacro(String),
    /// Subentry deeper than its parent plus one.
    BadNesting,
    /// `module_string` before any `module_path`.
    ModuleStringWithoutPath,
    /// A value longer than [`MAX_VALUE_LEN`].
    ValueTooLong,
    /// No entries at all.
    NoEntries,
    /// `default_entry` beyond the entry count.
    DefaultEntryOutOfRange {
        /// The configured index (1-based).
        index: usize,
        /// Number of entries.
        count: usize,
    },
    /// The default entry is not `protocol: limine` (the value, or `None` if absent).
    NotLimineProtocol(Option<String>),
    /// The default entry has no `path` / `kernel_path`.
    MissingPath,
    /// The default entry is a directory (it has sub-entries).
    IsDirectory,
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigErrorKind::Syntax(line) => {
                write!(
                    f,
                    "expected 'key: value', '/Entry' or '# comment', found '{line}'"
                )
            }
            ConfigErrorKind::UnknownOption(key) => write!(f, "unknown option '{key}'"),
            ConfigErrorKind::BadValue {
                key,
                value,
                expected,
            } => {
                write!(f, "bad value '{value}' for '{key}': expected {expected}")
            }
            ConfigErrorKind::UnknownResource(res) => write!(
                f,
                "unknown resource '{res}' (this loader reads only boot() and boot(N))"
            ),
            ConfigErrorKind::CompressedPath(path) => {
                write!(f, "compressed path '{path}' is not supported")
            }
            ConfigErrorKind::BadPath(path) => {
                write!(
                    f,
                    "bad path '{path}': expected 'boot():/path' or 'boot(N):/path'"
                )
            }
            ConfigErrorKind::UndefinedMacro(name) => write!(f, "undefined macro '${{{name}}}'"),
            ConfigErrorKind::BadNesting => {
                f.write_str("entry is nested more than one level below its parent")
            }
            ConfigErrorKind::ModuleStringWithoutPath => {
                f.write_str("module string given before any module_path")
            }
            ConfigErrorKind::ValueTooLong => {
                write!(f, "value longer than {MAX_VALUE_LEN} characters")
            }
            ConfigErrorKind::NoEntries => f.write_str("no boot entries"),
            ConfigErrorKind::DefaultEntryOutOfRange { index, count } => {
                write!(f, "default_entry {index} is out of range ({count} entries)")
            }
            ConfigErrorKind::NotLimineProtocol(Some(p)) => {
                write!(
                    f,
                    "default entry uses protocol '{p}', only 'limine' is supported"
                )
            }
            ConfigErrorKind::NotLimineProtocol(None) => {
                f.write_str("default entry has no 'protocol: limine'")
            }
            ConfigErrorKind::MissingPath => f.write_str("default entry has no 'path'"),
            ConfigErrorKind::IsDirectory => {
                f.write_str("default entry is a directory, not a bootable entry")
            }
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "limine.conf: {}", self.kind)
        } else {
            write!(f, "limine.conf line {}: {}", self.line, self.kind)
        }
    }
}

fn err(line: usize, kind: ConfigErrorKind) -> ConfigError {
    ConfigError { line, kind }
}

/// Built-in macros.
const BUILTIN_MACROS: [(&str, &str); 2] = [("ARCH", "x86-64"), ("FW_TYPE", "UEFI")];

/// Global options that are accepted but have no effect on this loader.
const IGNORED_GLOBALS: [&str; 7] = [
    "serial_baudrate",
    "remember_last_entry",
    "graphics",
    "randomise_memory",
    "randomize_memory",
    "hash_mismatch_panic",
    "backdrop",
];

/// Prefixes of global options that are ignored without complaint.
const IGNORED_GLOBAL_PREFIXES: [&str; 4] = ["interface_", "term_", "wallpaper", "editor_"];

/// Entry options of `limine` entries that are accepted but have no effect here.
const IGNORED_ENTRY_OPTIONS: [&str; 3] = ["textmode", "if_fw_type", "if_arch"];

/// `${NAME}=value` → `(NAME, value)`.
fn macro_definition(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("${")?;
    let (name, value) = rest.split_once("}=")?;
    Some((name, value.trim()))
}

/// Replaces every `${NAME}` in `line`.
fn expand_macros(line: &str, macros: &[(&str, &str)]) -> Result<String, ConfigErrorKind> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            // An unterminated `${` is literal text.
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let value = macros
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| ConfigErrorKind::UndefinedMacro(name.into()))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn bad_value(key: &str, value: &str, expected: &'static str) -> ConfigErrorKind {
    ConfigErrorKind::BadValue {
        key: key.into(),
        value: value.into(),
        expected,
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigErrorKind> {
    if value.eq_ignore_ascii_case("yes") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("no") {
        Ok(false)
    } else {
        Err(bad_value(key, value, "'yes' or 'no'"))
    }
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Longest timeout accepted, in seconds (as newer Limine).
const MAX_TIMEOUT_SECS: u64 = 9999;

fn parse_timeout(value: &str) -> Result<Timeout, ConfigErrorKind> {
    if value.eq_ignore_ascii_case("no") {
        return Ok(Timeout::Never);
    }
    let bad = || bad_value("timeout", value, "seconds or 'no'");
    let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (whole.is_empty() && frac.is_empty()) {
        return Err(bad());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // All digits: too many of them is just a long timeout.
    let secs = if whole.is_empty() {
        0
    } else {
        parse_decimal(whole).unwrap_or(u64::MAX)
    };
    let secs = secs.min(MAX_TIMEOUT_SECS);
    // Milliseconds from the first three fractional digits.
    let mut millis = 0;
    for (i, b) in frac
        .bytes()
        .chain(core::iter::repeat(b'0'))
        .take(3)
        .enumerate()
    {
        millis += u64::from(b - b'0') * [100, 10, 1][i];
    }
    Ok(Timeout::Millis(
        (secs * 1000 + millis).min(MAX_TIMEOUT_SECS * 1000),
    ))
}

fn parse_resolution(value: &str) -> Result<Resolution, ConfigErrorKind> {
    let bad = || bad_value("resolution", value, "WIDTHxHEIGHT or WIDTHxHEIGHTxBPP");
    let mut parts = value.split(['x', 'X']);
    let mut num = || -> Result<Option<u32>, ConfigErrorKind> {
        match parts.next() {
            None => Ok(None),
            Some(p) => {
                let n = parse_decimal(p)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(bad)?;
                if n == 0 { Err(bad()) } else { Ok(Some(n)) }
            }
        }
    };
    let width = num()?.ok_or_else(bad)?;
    let height = num()?.ok_or_else(bad)?;
    let bpp = num()?;
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(Resolution { width, height, bpp })
}

fn parse_paging_mode(key: &str, value: &str) -> Result<PagingMode, ConfigErrorKind> {
    if value.eq_ignore_ascii_case("4level") {
        Ok(PagingMode::Level4)
    } else if value.eq_ignore_ascii_case("5level") {
        Ok(PagingMode::Level5)
    } else {
        Err(bad_value(key, value, "'4level' or '5level'"))
    }
}

/// Parses a `resource(arg):/path[#hash]` reference.
pub fn parse_path(text: &str) -> Result<Path, ConfigErrorKind> {
    let bad = || ConfigErrorKind::BadPath(text.into());
    if text.starts_with('$') {
        return Err(ConfigErrorKind::CompressedPath(text.into()));
    }
    let open = text.find('(').ok_or_else(bad)?;
    let close = open + text[open..].find(')').ok_or_else(bad)?;
    let resource = &text[..open];
    let arg = &text[open + 1..close];
    let rest = text[close + 1..].strip_prefix(':').ok_or_else(bad)?;
    if !resource.eq_ignore_ascii_case("boot") {
        return Err(ConfigErrorKind::UnknownResource(text[..=close].into()));
    }
    let partition = if arg.is_empty() {
        None
    } else {
        let n = parse_decimal(arg)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(bad)?;
        if n == 0 {
            return Err(bad());
        }
        Some(n)
    };
    let (path, hash) = match rest.rsplit_once('#') {
        Some((path, hash)) => {
            let valid =
                matches!(hash.len(), 64 | 128 | 256) && hash.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return Err(bad());
            }
            (path, Some(hash.to_ascii_lowercase()))
        }
        None => (rest, None),
    };
    if !path.starts_with('/') || path.len() < 2 {
        return Err(bad());
    }
    Ok(Path {
        partition,
        path: path.into(),
        hash,
    })
}

/// An entry while its options are being collected.
struct RawEntry {
    entry: Entry,
    options: Vec<(String, String, usize)>,
}

impl RawEntry {
    /// Interprets the collected options; strictly for `protocol: limine` entries.
    fn finish(mut self) -> Result<Entry, ConfigError> {
        for (key, value, _) in &self.options {
            match key.as_str() {
                "protocol" => self.entry.protocol = Some(value.to_ascii_lowercase()),
                "comment" => self.entry.comment = Some(value.clone()),
                _ => {}
            }
        }
        if self.entry.protocol.as_deref() != Some("limine") {
            return Ok(self.entry);
        }
        let mut e = LimineEntry {
            path: None,
            cmdline: String::new(),
            modules: Vec::new(),
            kaslr: false,
            randomise_hhdm_base: None,
            resolution: None,
            paging_mode: None,
            max_paging_mode: None,
            min_paging_mode: None,
            dtb_path: None,
        };
        for (key, value, line) in &self.options {
            let (key, value, line) = (key.as_str(), value.as_str(), *line);
            let apply = |e: &mut LimineEntry| -> Result<(), ConfigErrorKind> {
                match key {
                    "protocol" | "comment" => {}
                    "path" | "kernel_path" => e.path = Some(parse_path(value)?),
                    "cmdline" | "kernel_cmdline" => e.cmdline = value.into(),
                    "module_path" => {
                        e.modules.push(Module {
                            path: parse_path(value)?,
                            string: String::new(),
                        });
                    }
                    "module_string" | "module_cmdline" => {
                        e.modules
                            .last_mut()
                            .ok_or(ConfigErrorKind::ModuleStringWithoutPath)?
                            .string = value.into();
                    }
                    "kaslr" => e.kaslr = parse_bool(key, value)?,
                    "randomise_hhdm_base" | "randomize_hhdm_base" => {
                        e.randomise_hhdm_base = Some(parse_bool(key, value)?);
                    }
                    "resolution" => e.resolution = Some(parse_resolution(value)?),
                    "paging_mode" => e.paging_mode = Some(parse_paging_mode(key, value)?),
                    "max_paging_mode" => e.max_paging_mode = Some(parse_paging_mode(key, value)?),
                    "min_paging_mode" => e.min_paging_mode = Some(parse_paging_mode(key, value)?),
                    "dtb_path" => e.dtb_path = Some(parse_path(value)?),
                    _ if IGNORED_ENTRY_OPTIONS.contains(&key) => {}
                    _ => return Err(ConfigErrorKind::UnknownOption(key.into())),
                }
                Ok(())
            };
            apply(&mut e).map_err(|kind| err(line, kind))?;
        }
        self.entry.limine = Some(e);
        Ok(self.entry)
    }
}

/// Applies a global option; `Ok(false)` if `key` is not a global option.
fn apply_global(cfg: &mut Config, key: &str, value: &str) -> Result<bool, ConfigErrorKind> {
    match key {
        "timeout" => cfg.timeout = parse_timeout(value)?,
        "default_entry" => {
            cfg.default_entry = parse_decimal(value)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n >= 1)
                .ok_or_else(|| bad_value(key, value, "a 1-based entry number"))?;
        }
        "serial" => cfg.serial = parse_bool(key, value)?,
        "verbose" => cfg.verbose = parse_bool(key, value)?,
        "quiet" => cfg.quiet = parse_bool(key, value)?,
        "evergreen_strict" => cfg.strict = parse_bool(key, value)?,
        "evergreen_slots" => cfg.slots = parse_bool(key, value)?,
        _ if IGNORED_GLOBALS.contains(&key) => {}
        _ if IGNORED_GLOBAL_PREFIXES.iter().any(|p| key.starts_with(p)) => {}
        _ => return Ok(false),
    }
    Ok(true)
}

/// Parses the text of a `limine.conf`.
///
/// Global options are recognised anywhere (as Limine does), entry options belong to the
/// entry above them. Unknown options are errors, except the ignored global families
/// (`interface_*`, `term_*`, `wallpaper*`, `editor_*`, ...) and options of entries whose
/// protocol is not `limine`, which are not interpreted at all.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut macros: Vec<(&str, &str)> = BUILTIN_MACROS.to_vec();
    macros.extend(text.lines().filter_map(|l| macro_definition(l.trim())));

    let mut cfg = Config {
        timeout: Timeout::Millis(5000),
        default_entry: 1,
        serial: false,
        verbose: false,
        quiet: false,
        strict: false,
        slots: false,
        entries: Vec::new(),
    };
    let mut current: Option<RawEntry> = None;
    for (index, raw) in text.lines().enumerate() {
        let n = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || macro_definition(trimmed).is_some() {
            continue;
        }
        let line = expand_macros(trimmed, &macros).map_err(|k| err(n, k))?;
        if let Some(title) = line.strip_prefix('/') {
            let depth = 1 + title.bytes().take_while(|&b| b == b'/').count();
            let title = &line[depth..];
            let (expanded, title) = match title.strip_prefix('+') {
                Some(t) => (true, t),
                None => (false, title),
            };
            let parent_depth = current.as_ref().map_or(0, |c| c.entry.depth);
            if depth > parent_depth + 1 {
                return Err(err(n, ConfigErrorKind::BadNesting));
            }
            if let Some(prev) = current.take() {
                let mut prev = prev.finish()?;
                prev.directory = depth > prev.depth;
                cfg.entries.push(prev);
            }
            current = Some(RawEntry {
                entry: Entry {
                    title: title.trim().into(),
                    depth,
                    expanded,
                    line: n,
                    directory: false,
                    comment: None,
                    protocol: None,
                    limine: None,
                },
                options: Vec::new(),
            });
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(err(n, ConfigErrorKind::Syntax(line)));
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(err(n, ConfigErrorKind::Syntax(line.clone())));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(err(n, ConfigErrorKind::ValueTooLong));
        }
        if apply_global(&mut cfg, &key, value).map_err(|k| err(n, k))? {
            continue;
        }
        match current.as_mut() {
            Some(entry) => entry.options.push((key, value.into(), n)),
            None => return Err(err(n, ConfigErrorKind::UnknownOption(key))),
        }
    }
    if let Some(last) = current.take() {
        cfg.entries.push(last.finish()?);
    }
    Ok(cfg)
}

impl Config {
    /// The entry to boot: the `default_entry`-th entry, which must be a `limine` entry with
    /// a path. Returns the entry and its `limine` options.
    pub fn entry_to_boot(&self) -> Result<(&Entry, &LimineEntry), ConfigError> {
        if self.entries.is_empty() {
            return Err(err(0, ConfigErrorKind::NoEntries));
        }
        let count = self.entries.len();
        let entry = self
            .default_entry
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .ok_or_else(|| {
                err(
                    0,
                    ConfigErrorKind::DefaultEntryOutOfRange {
                        index: self.default_entry,
                        count,
                    },
                )
            })?;
        if entry.directory {
            return Err(err(entry.line, ConfigErrorKind::IsDirectory));
        }
        let limine = entry.limine.as_ref().ok_or_else(|| {
            err(
                entry.line,
                ConfigErrorKind::NotLimineProtocol(entry.protocol.clone()),
            )
        })?;
        if limine.path.is_none() {
            return Err(err(entry.line, ConfigErrorKind::MissingPath));
        }
        Ok((entry, limine))
    }
}

#[cfg(test)]
mod tests;
