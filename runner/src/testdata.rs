//! Deterministic test data: the conformance test's module and its checksum.

/// FNV-1a, 64-bit, over `data` (the checksum in the test module's command line).
pub fn fnv1a64(data: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    data.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// `len` pseudo-random bytes from a fixed seed (xorshift64*), the same on every run.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The conformance test's module: about 300 KiB, deliberately not a whole number of pages.
#[derive(Clone, Debug)]
pub struct TestModule {
    /// The module's bytes.
    pub data: Vec<u8>,
}

impl TestModule {
    /// Size of the module: 300 KiB plus a tail, so its last page is partly used.
    pub const SIZE: usize = 300 * 1024 + 1234;
    /// The file name under `/boot/`.
    pub const FILE_NAME: &'static str = "testmod.bin";
    /// The seed of its bytes; the probe regenerates them to compare byte by byte.
    pub const SEED: u64 = 0x4576_6572_6772_6565;

    /// Makes the module.
    pub fn new() -> Self {
        Self {
            data: pseudo_random_bytes(Self::SIZE, Self::SEED),
        }
    }

    /// The module command line the conformance probe checks against: the size, the checksum
    /// and the seed of the xorshift64* stream the bytes come from.
    pub fn cmdline(&self) -> String {
        format!(
            "testmod size={} fnv1a={:016x} seed={:016x}",
            self.data.len(),
            fnv1a64(&self.data),
            Self::SEED
        )
    }
}

impl Default for TestModule {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn test_module_is_deterministic_and_not_page_sized() {
        let a = TestModule::new();
        let b = TestModule::new();
        assert_eq!(a.data, b.data);
        assert_eq!(a.data.len(), TestModule::SIZE);
        assert_ne!(a.data.len() % 4096, 0);
        let cmdline = a.cmdline();
        let hash = cmdline
            .split(' ')
            .find_map(|w| w.strip_prefix("fnv1a="))
            .expect("hash present");
        let seed = cmdline.split(' ').find_map(|w| w.strip_prefix("seed="));
        assert_eq!(seed, Some("4576657267726565"));
        assert_eq!(hash.len(), 16);
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        assert!(cmdline.starts_with(&format!("testmod size={} ", TestModule::SIZE)));
        // Not trivially compressible: plenty of distinct byte values.
        let distinct = a
            .data
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert_eq!(distinct, 256);
    }
}
