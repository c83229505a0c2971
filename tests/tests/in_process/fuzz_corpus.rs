//! The fuzz targets' corpus (`fuzz/corpus/`), replayed deterministically: every seed and a
//! fixed set of mutations of it run through what `cargo fuzz` runs, with the outcomes a
//! reader can check by hand for the seeds.

use api::fuzzing;
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the {target} corpus is there");
    files
}

/// A small deterministic PRNG (xorshift64*): the same mutations on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte flips, interesting bytes, insertions, deletions and truncations.
fn mutants(seed: &[u8], rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    const INTERESTING: &[u8] = b"\0\xff\"{}[],:0-.\\\n ";
    (0..n)
        .map(|_| {
            let mut m = seed.to_vec();
            for _ in 0..=rng.below(4) {
                let at = rng.below(m.len() + 1);
                match rng.below(5) {
                    0 if !m.is_empty() => {
                        let i = at.min(m.len() - 1);
                        m[i] ^= 1 << rng.below(8);
                    }
                    1 if !m.is_empty() => {
                        let i = at.min(m.len() - 1);
                        m[i] = INTERESTING[rng.below(INTERESTING.len())];
                    }
                    2 => m.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
                    3 if at < m.len() => {
                        m.remove(at);
                    }
                    _ => m.truncate(at),
                }
            }
            m
        })
        .collect()
}

#[test]
fn clerk_event_corpus_parses_as_expected_and_never_panics() {
    let mut rng = Rng(0x5EED_0001);
    for (name, data) in corpus("clerk_event") {
        // Clerk's own bodies (the fixtures, `*.json`) parse; the crafted bad ones do not.
        let parsed = fuzzing::clerk_event(&data).is_some();
        let want = name.ends_with(".json")
            || matches!(
                name.as_str(),
                "unknown-type"
                    | "no-emails"
                    | "primary-email-missing"
                    | "unicode-name"
                    | "negative-updated-at"
                    | "odd-metadata"
            );
        assert_eq!(parsed, want, "{name}");
        for m in mutants(&data, &mut rng, 200) {
            let _ = fuzzing::clerk_event(&m);
        }
    }
}

#[test]
fn svix_corpus_verifies_only_real_signatures_and_never_panics() {
    let mut rng = Rng(0x5EED_0002);
    for (name, data) in corpus("svix_headers") {
        let want = matches!(
            name.as_str(),
            "valid" | "valid-rotated" | "valid-edge-of-window"
        );
        assert_eq!(fuzzing::svix_headers(&data), want, "{name}");
        // Mutants may only verify if they still carry their body's signature: the target
        // itself asserts that.
        for m in mutants(&data, &mut rng, 200) {
            let _ = fuzzing::svix_headers(&m);
        }
    }
}
