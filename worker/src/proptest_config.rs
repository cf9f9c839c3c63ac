//! The one proptest configuration of every property suite (the worker's ID-token
//! properties and the api's HTTP properties, which include this file by path).
//!
//! A plain run, as CI makes, draws its cases from the fixed [`SEED`]: the same inputs
//! every run, so a property that can fail fails every time and CI never depends on
//! luck. The random search stays one variable away:
//!
//! - `PROPTEST_CASES=N` runs N cases per property instead of its default;
//! - `PROPTEST_RNG_SEED=random` draws a fresh seed per property and prints it first;
//! - `PROPTEST_RNG_SEED=N` replays seed N (the one a failed search printed).
//!
//! Whatever a search finds is kept as a plain unit test beside the property.

use std::hash::BuildHasher;

use proptest::test_runner::{Config, RngSeed};

/// The seed of every plain run. Changing it changes the cases CI sees.
pub const SEED: u64 = 0x5349_474e_494e_0010;

/// `default_cases` cases (or `PROPTEST_CASES`) from the seed described above, with no
/// persistence file: found cases are kept as unit tests instead.
pub fn config(default_cases: u32) -> Config {
    Config {
        cases: env_cases().unwrap_or(default_cases),
        rng_seed: RngSeed::Fixed(seed()),
        failure_persistence: None,
        ..Config::default()
    }
}

fn env_cases() -> Option<u32> {
    std::env::var("PROPTEST_CASES").ok()?.trim().parse().ok()
}

fn seed() -> u64 {
    match std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .as_deref()
        .map(str::trim)
    {
        None | Some("") => SEED,
        Some("random") => {
            let seed = std::collections::hash_map::RandomState::new().hash_one(0u8);
            eprintln!("proptest: PROPTEST_RNG_SEED={seed} (random search; replay with it)");
            seed
        }
        Some(n) => n
            .parse()
            .unwrap_or_else(|_| panic!("PROPTEST_RNG_SEED={n:?}: a u64 or \"random\"")),
    }
}
