use std::string::ToString;

use super::*;

/// The config the runner writes (COMMON.md).
const RUNNER_CONF: &str = "timeout: 0
/Evergreen
    protocol: limine
    kernel_path: boot():/boot/kernel
    cmdline: test=conformance log=debug
    kaslr: no
    module_path: boot():/boot/testmod
    module_cmdline: testmod size=5 fnv1a=0123456789abcdef
";

fn path(p: &str) -> Path {
    Path {
        partition: None,
        path: p.into(),
        hash: None,
    }
}

#[test]
fn parses_the_runner_config() {
    let cfg = parse(RUNNER_CONF).expect("valid");
    assert_eq!(cfg.timeout, Timeout::Millis(0));
    assert_eq!(cfg.default_entry, 1);
    assert_eq!(cfg.entries.len(), 1);
    let (entry, limine) = cfg.entry_to_boot().expect("bootable");
    assert_eq!(entry.title, "Evergreen");
    assert_eq!((entry.depth, entry.line), (1, 2));
    assert_eq!(limine.path, Some(path("/boot/kernel")));
    assert_eq!(limine.cmdline, "test=conformance log=debug");
    assert!(!limine.kaslr);
    assert!(!limine.randomise_hhdm());
    assert_eq!(limine.modules.len(), 1);
    assert_eq!(limine.modules[0].path, path("/boot/testmod"));
    assert_eq!(
        limine.modules[0].string,
        "testmod size=5 fnv1a=0123456789abcdef"
    );
}

#[test]
fn accepts_newer_spellings_case_and_comments() {
    let text = "# a comment\r
TIMEOUT: 2.5\r
Default_Entry: 2\r
serial: yes\r
verbose: yes\r
quiet: no\r
Evergreen_Strict: yes\r
evergreen_slots: yes\r
interface_branding: My OS\r
term_palette: 1;2;3\r
wallpaper: boot():/bg.png\r
editor_enabled: no\r
\r
/Other\r
    protocol: linux\r
    kernel_path: hdd(1:2):/vmlinuz\r
    whatever: is not interpreted\r
/+Evergreen\r
    PROTOCOL: Limine\r
    comment: the OS\r
    path: boot(2):/boot/kernel#AABBCCDDEEFF00112233445566778899AABBCCDDEEFF00112233445566778899\r
    kernel_cmdline: a: b c\r
    module_path: boot():/m1\r
    module_string: first\r
    module_path: boot():/m2\r
    kaslr: yes\r
    randomize_hhdm_base: no\r
    resolution: 1024x768\r
    paging_mode: 4level\r
    max_paging_mode: 5LEVEL\r
    min_paging_mode: 4level\r
    dtb_path: boot():/x.dtb\r
";
    let cfg = parse(text).expect("valid");
    assert_eq!(cfg.timeout, Timeout::Millis(2500));
    assert!(cfg.serial && cfg.verbose && !cfg.quiet && cfg.strict && cfg.slots);
    assert_eq!(cfg.entries[0].protocol.as_deref(), Some("linux"));
    assert!(cfg.entries[0].limine.is_none());
    let (entry, e) = cfg.entry_to_boot().expect("bootable");
    assert!(entry.expanded);
    assert_eq!(entry.title, "Evergreen");
    assert_eq!(entry.comment.as_deref(), Some("the OS"));
    let p = e.path.as_ref().expect("path");
    assert_eq!(p.partition, Some(2));
    assert_eq!(p.path, "/boot/kernel");
    assert_eq!(
        p.hash.as_deref(),
        Some("aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899")
    );
    assert_eq!(e.cmdline, "a: b c", "the value runs to the end of the line");
    assert_eq!(e.modules[0].string, "first");
    assert_eq!(e.modules[1].path, path("/m2"));
    assert_eq!(e.modules[1].string, "");
    assert!(e.kaslr && !e.randomise_hhdm());
    assert_eq!(
        e.resolution,
        Some(Resolution {
            width: 1024,
            height: 768,
            bpp: None
        })
    );
    assert_eq!(e.paging_mode, Some(PagingMode::Level4));
    assert_eq!(e.max_paging_mode, Some(PagingMode::Level5));
    assert_eq!(e.min_paging_mode, Some(PagingMode::Level4));
    assert_eq!(e.dtb_path, Some(path("/x.dtb")));
}

#[test]
fn timeouts() {
    let t = |v: &str| parse(&std::format!("timeout: {v}\n")).map(|c| c.timeout);
    assert_eq!(t("no"), Ok(Timeout::Never));
    assert_eq!(t("5"), Ok(Timeout::Millis(5000)));
    assert_eq!(t("0.25"), Ok(Timeout::Millis(250)));
    assert_eq!(t(".5"), Ok(Timeout::Millis(500)));
    assert_eq!(t("1.23456"), Ok(Timeout::Millis(1234)));
    assert_eq!(t("100000"), Ok(Timeout::Millis(9_999_000)));
    assert_eq!(t("99999999999999999999999"), Ok(Timeout::Millis(9_999_000)));
    for bad in ["-1", "1.2.3", "", ".", "soon"] {
        let e = t(bad).expect_err(bad);
        assert_eq!(e.line, 1);
        assert!(
            matches!(e.kind, ConfigErrorKind::BadValue { .. }),
            "{bad}: {e}"
        );
    }
    assert_eq!(
        parse("").map(|c| c.timeout),
        Ok(Timeout::Millis(5000)),
        "Limine's default"
    );
}

#[test]
fn macros_expand_everywhere_but_definitions() {
    let text = "${KERNEL}=boot():/boot/kernel
${ARGS}=a=1 arch=${ARCH}
/E
protocol: limine
path: ${KERNEL}
cmdline: ${ARGS} fw=${FW_TYPE} ${unterminated
";
    let cfg = parse(text).expect("valid");
    let (_, e) = cfg.entry_to_boot().expect("bootable");
    assert_eq!(e.path, Some(path("/boot/kernel")));
    assert_eq!(e.cmdline, "a=1 arch=${ARCH} fw=UEFI ${unterminated");
    let err = parse("/E\nprotocol: limine\npath: ${NOPE}\n").expect_err("undefined");
    assert_eq!(
        err,
        ConfigError {
            line: 3,
            kind: ConfigErrorKind::UndefinedMacro("NOPE".into())
        }
    );
}

#[test]
fn rejects_unsupported_resources_with_line_numbers() {
    let text = "timeout: 3\n\n/E\n  protocol: limine\n\n\n  kernel_path: hdd(0:1):/kernel\n";
    let err = parse(text).expect_err("hdd is not supported");
    assert_eq!(err.line, 7);
    assert_eq!(
        err.kind,
        ConfigErrorKind::UnknownResource("hdd(0:1)".into())
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("limine.conf line 7: unknown resource 'hdd(0:1)'"),
        "{msg}"
    );
    for res in [
        "guid(736b5698-5ae1-4dff-be2c-ef8f44a61c52)",
        "uuid(x)",
        "fslabel(ESP)",
        "tftp()",
        "odd(1:1)",
    ] {
        assert!(
            matches!(parse_path(&std::format!("{res}:/k")), Err(ConfigErrorKind::UnknownResource(r)) if r == res),
            "{res}"
        );
    }
    assert_eq!(
        parse_path("$boot():/initrd.gz"),
        Err(ConfigErrorKind::CompressedPath("$boot():/initrd.gz".into()))
    );
}

#[test]
fn path_syntax() {
    assert_eq!(parse_path("boot():/a/b"), Ok(path("/a/b")));
    assert_eq!(parse_path("BOOT(3):/k").map(|p| p.partition), Ok(Some(3)));
    let h128 = "ab".repeat(64);
    assert_eq!(
        parse_path(&std::format!("boot():/k#{h128}")).map(|p| p.hash),
        Ok(Some(h128.clone()))
    );
    for bad in [
        "boot:///k",
        "/boot/kernel",
        "boot()/k",
        "boot():k",
        "boot():/",
        "boot(0):/k",
        "boot(x):/k",
        "boot(:/k",
        "boot():/k#123",
        "boot():/k#zz",
        "",
    ] {
        assert!(
            matches!(parse_path(bad), Err(ConfigErrorKind::BadPath(_))),
            "{bad}"
        );
    }
}

#[test]
fn nesting_and_directories() {
    let text = "default_entry: 2
/Dir
//Inner
protocol: limine
path: boot():/k
///Deeper
protocol: limine
path: boot():/k2
/Top
protocol: limine
path: boot():/k3
";
    let cfg = parse(text).expect("valid");
    let depths: std::vec::Vec<_> = cfg
        .entries
        .iter()
        .map(|e| (e.title.as_str(), e.depth, e.directory))
        .collect();
    assert_eq!(
        depths,
        [
            ("Dir", 1, true),
            ("Inner", 2, true),
            ("Deeper", 3, false),
            ("Top", 1, false)
        ]
    );
    let err = cfg.entry_to_boot().expect_err("Inner is a directory");
    assert_eq!((err.line, err.kind), (3, ConfigErrorKind::IsDirectory));
    let mut cfg = cfg;
    cfg.default_entry = 3;
    assert_eq!(
        cfg.entry_to_boot().map(|(e, _)| e.title.as_str()),
        Ok("Deeper")
    );
    cfg.default_entry = 4;
    assert_eq!(cfg.entry_to_boot().map(|(e, _)| e.line), Ok(9));

    let err = parse("/A\n///TooDeep\n").expect_err("bad nesting");
    assert_eq!((err.line, err.kind), (2, ConfigErrorKind::BadNesting));
    let err = parse("//First\n").expect_err("bad nesting");
    assert_eq!((err.line, err.kind), (1, ConfigErrorKind::BadNesting));
}

#[test]
fn entry_selection_errors() {
    let err = parse("timeout: 1\n")
        .expect("valid")
        .entry_to_boot()
        .expect_err("none");
    assert_eq!(
        err,
        ConfigError {
            line: 0,
            kind: ConfigErrorKind::NoEntries
        }
    );
    assert_eq!(err.to_string(), "limine.conf: no boot entries");

    let cfg = parse("default_entry: 3\n/A\nprotocol: limine\npath: boot():/k\n").expect("valid");
    assert_eq!(
        cfg.entry_to_boot().expect_err("out of range").kind,
        ConfigErrorKind::DefaultEntryOutOfRange { index: 3, count: 1 }
    );
    let cfg = parse("/A\nprotocol: linux\nkernel_path: boot():/k\n").expect("valid");
    let err = cfg.entry_to_boot().expect_err("linux");
    assert_eq!(
        err.kind,
        ConfigErrorKind::NotLimineProtocol(Some("linux".into()))
    );
    assert_eq!(err.line, 1);
    let cfg = parse("/A\ncmdline: x\n").expect("valid");
    assert_eq!(
        cfg.entry_to_boot().expect_err("no protocol").kind,
        ConfigErrorKind::NotLimineProtocol(None)
    );
    let cfg = parse("/A\nprotocol: limine\n").expect("valid");
    assert_eq!(
        cfg.entry_to_boot().expect_err("no path").kind,
        ConfigErrorKind::MissingPath
    );
    assert!(matches!(
        parse("default_entry: 0\n").expect_err("1-based").kind,
        ConfigErrorKind::BadValue { .. }
    ));
}

#[test]
fn syntax_and_option_errors() {
    let cases: [(&str, usize, ConfigErrorKind); 10] = [
        (
            "TIMEOUT=5\n",
            1,
            ConfigErrorKind::Syntax("TIMEOUT=5".into()),
        ),
        (
            "bogus: 1\n",
            1,
            ConfigErrorKind::UnknownOption("bogus".into()),
        ),
        (
            "/E\nprotocol: limine\nkernal_path: boot():/k\n",
            3,
            ConfigErrorKind::UnknownOption("kernal_path".into()),
        ),
        (
            "/E\nprotocol: limine\nmodule_string: x\n",
            3,
            ConfigErrorKind::ModuleStringWithoutPath,
        ),
        (
            "serial: maybe\n",
            1,
            ConfigErrorKind::BadValue {
                key: "serial".into(),
                value: "maybe".into(),
                expected: "'yes' or 'no'",
            },
        ),
        (
            "/E\nprotocol: limine\nkaslr: 1\n",
            3,
            ConfigErrorKind::BadValue {
                key: "kaslr".into(),
                value: "1".into(),
                expected: "'yes' or 'no'",
            },
        ),
        (
            "/E\nprotocol: limine\nresolution: 1024\n",
            3,
            ConfigErrorKind::BadValue {
                key: "resolution".into(),
                value: "1024".into(),
                expected: "WIDTHxHEIGHT or WIDTHxHEIGHTxBPP",
            },
        ),
        (
            "/E\nprotocol: limine\nresolution: 0x768\n",
            3,
            ConfigErrorKind::BadValue {
                key: "resolution".into(),
                value: "0x768".into(),
                expected: "WIDTHxHEIGHT or WIDTHxHEIGHTxBPP",
            },
        ),
        (
            "/E\nprotocol: limine\npaging_mode: 3level\n",
            3,
            ConfigErrorKind::BadValue {
                key: "paging_mode".into(),
                value: "3level".into(),
                expected: "'4level' or '5level'",
            },
        ),
        (
            "key with space: 1\n",
            1,
            ConfigErrorKind::Syntax("key with space: 1".into()),
        ),
    ];
    for (text, line, kind) in cases {
        assert_eq!(parse(text), Err(ConfigError { line, kind }), "{text:?}");
    }
    let long = std::format!(
        "/E\nprotocol: limine\ncmdline: {}\n",
        "x".repeat(MAX_VALUE_LEN + 1)
    );
    assert_eq!(
        parse(&long),
        Err(ConfigError {
            line: 3,
            kind: ConfigErrorKind::ValueTooLong
        })
    );
    let r =
        parse("/E\nprotocol: limine\npath: boot():/k\nresolution: 800x600x32\n").expect("valid");
    assert_eq!(
        r.entry_to_boot().map(|(_, e)| e.resolution),
        Ok(Some(Resolution {
            width: 800,
            height: 600,
            bpp: Some(32)
        }))
    );
}

#[test]
fn search_paths_cover_both_limine_orders() {
    for p in [
        "/limine.conf",
        "/limine/limine.conf",
        "/boot/limine.conf",
        "/boot/limine/limine.conf",
        "/EFI/BOOT/limine.conf",
    ] {
        assert!(SEARCH_PATHS.contains(&p), "{p}");
    }
    assert_eq!(SEARCH_PATHS[0], "/EFI/BOOT/limine.conf");
}

#[test]
fn never_panics_on_odd_input() {
    for text in [
        "/",
        "//",
        "/+",
        ":",
        ": x",
        "#",
        "${",
        "${}=",
        "${A}=${A}\ncmdline: ${A}",
        "\u{feff}timeout: 1",
        "/E\nprotocol:\n",
        "/é\nprotocol: limine\npath: boot():/ü\n",
    ] {
        let _ = parse(text);
    }
    assert_eq!(
        parse("\u{feff}timeout: 1").map(|c| c.timeout),
        Ok(Timeout::Millis(1000))
    );
}
