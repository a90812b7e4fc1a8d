//! The kernel command line: space-separated `key=value` words (and bare flags).

use log::LevelFilter;

/// The options Evergreen understands.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    /// `log=error|warn|info|debug|trace`.
    pub log_level: LevelFilter,
    /// `test=NAME`: run a built-in test instead of booting normally.
    pub test: Option<&'a str>,
    /// `panic=reboot` resets the machine on a panic; `panic=halt` (the default) stops it.
    pub reboot_on_panic: bool,
    /// `cpus=N`: how many CPUs the machine has, for tests that check the loader found them.
    pub expect_cpus: Option<usize>,
    /// `maxcpus=N` (as in Linux): run on at most N CPUs; hal parks the rest in a halt loop.
    pub max_cpus: usize,
    /// `init=PATH` (as in Linux): the program to run once the kernel is up.
    pub init: Option<&'a str>,
    /// The words after `--`: the init program's arguments (as in Linux).
    pub init_args: Option<&'a str>,
    /// `strace`: print every system call of user programs, as `strace -f` does.
    pub strace: bool,
    /// `ip=ADDR/PREFIX`: eth0's static address (else DHCP).
    pub ip: Option<&'a str>,
    /// `gw=ADDR`: the default gateway with `ip=`.
    pub gw: Option<&'a str>,
}

impl<'a> Options<'a> {
    /// Parses `cmdline`; unknown words are returned through `unknown` so they can be reported.
    pub fn parse(cmdline: &'a str, mut unknown: impl FnMut(&'a str)) -> Self {
        let mut options = Options {
            log_level: LevelFilter::Info,
            test: None,
            reboot_on_panic: false,
            expect_cpus: None,
            max_cpus: hal::smp::MAX_CPUS,
            init: None,
            init_args: None,
            strace: false,
            ip: None,
            gw: None,
        };
        let (cmdline, init_args) = match cmdline.split_once(" -- ") {
            Some((kernel, args)) => (kernel, Some(args)),
            None => (cmdline.strip_suffix(" --").unwrap_or(cmdline), None),
        };
        options.init_args = init_args;
        for word in cmdline.split_ascii_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match key {
                "log" => match value.parse() {
                    Ok(level) => options.log_level = level,
                    Err(_) => unknown(word),
                },
                "test" => options.test = Some(value),
                "init" if !value.is_empty() => options.init = Some(value),
                "strace" if value.is_empty() => options.strace = true,
                "ip" if !value.is_empty() => options.ip = Some(value),
                "gw" if !value.is_empty() => options.gw = Some(value),
                "cpus" => match value.parse() {
                    Ok(n) => options.expect_cpus = Some(n),
                    Err(_) => unknown(word),
                },
                "maxcpus" => match value.parse() {
                    Ok(n) if n >= 1 => options.max_cpus = n,
                    _ => unknown(word),
                },
                "panic" => match value {
                    "reboot" => options.reboot_on_panic = true,
                    "halt" => options.reboot_on_panic = false,
                    _ => unknown(word),
                },
                _ => unknown(word),
            }
        }
        options
    }
}
