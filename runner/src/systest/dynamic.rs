//! What the `user-dynamic` case copies into Evergreen's root file system: Debian's own
//! dynamically linked programs from the build host, each with the shared libraries and the
//! interpreter `ldd` lists for it (as `exec --add-with-libs` does), and the few files of
//! Python's standard library that `python3 -c` reads at start-up. The script
//! (`user/tests/dynamic.sh`) then runs on the host and on Evergreen, and the outputs must be
//! the same.

use std::path::Path;

use crate::rootfs::AddSpec;

/// The programs, at the same path on the host and in the guest.
const PROGRAMS: [&str; 5] = [
    "/usr/bin/ls",
    "/usr/bin/sort",
    "/usr/bin/sha256sum",
    "/usr/bin/find",
    "/usr/bin/python3",
];

/// What Python 3.11 reads before it runs `-c`: `os.py` is how it finds its prefix,
/// `lib-dynload` its exec prefix (without it, a warning on stderr), `encodings` the codecs it
/// imports at start-up (most of the rest is frozen into the binary).
const PYTHON_FILES: [&str; 3] = [
    "/usr/lib/python3.11/os.py",
    "/usr/lib/python3.11/encodings",
    "/usr/lib/python3.11/lib-dynload",
];

/// The additions, leaving out what the host does not have (the script then says it skipped
/// it, on both sides).
pub(super) fn adds() -> Vec<AddSpec> {
    let mut adds = Vec::new();
    for program in PROGRAMS {
        if Path::new(program).exists() {
            adds.push(AddSpec {
                host: program.into(),
                guest: program.into(),
                with_libs: true,
            });
        } else {
            crate::status!("user-dynamic: {program} is not on this host; its checks are skipped");
        }
    }
    if Path::new("/usr/bin/python3").exists() {
        for file in PYTHON_FILES.iter().filter(|f| Path::new(f).exists()) {
            adds.push(AddSpec {
                host: file.into(),
                guest: (*file).to_owned(),
                with_libs: false,
            });
        }
    }
    adds
}
