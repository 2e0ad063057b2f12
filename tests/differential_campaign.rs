//! The differential campaign: N random models (`nnc::testing::random_model`), each on every
//! executor of `Plan::full()` — the interpreter at -O1…-O3, the JIT at -O0…-O3 with
//! microkernels on and off on one and two threads, the accelerator at -O0…-O3 in both
//! dataflows in f32 and int8 — against the interpreter at -O0; one model in four pruned
//! first to 85% zeros (the sparse kernels), one in four to half its channels. Too long for the default
//! suite; run it with
//!
//! ```text
//! NNC_CAMPAIGN_GRAPHS=10000 cargo test --release --test differential_campaign -- --ignored --nocapture
//! ```
//!
//! `NNC_CAMPAIGN_SEED` picks another stream of models; `NNC_CAMPAIGN_ONLY=I,J,...` replays
//! just those cases of it. Cases are split over two workers;
//! every failure is printed with its model, and the test fails if there was any. The
//! campaigns run so far are recorded in `docs/testing.md`.

use nnc::testing::differential::{check, Plan};
use nnc::testing::random_model::random_model;
use rand::{RngExt, SeedableRng};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The bytes and weight seed of case `i` of the stream `seed`: each case is reproducible on
/// its own.
fn case(seed: u64, i: u64) -> (Vec<u8>, u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i);
    let len = rng.random_range(0..200);
    ((0..len).map(|_| rng.random()).collect(), rng.random_range(0..1000))
}

#[test]
#[ignore]
fn differential_campaign() {
    let seed = env("NNC_CAMPAIGN_SEED", 0);
    // `NNC_CAMPAIGN_ONLY=1069,5039` replays just those cases of the stream.
    let only: Option<Vec<u64>> = std::env::var("NNC_CAMPAIGN_ONLY").ok().map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect());
    let graphs = only.as_ref().map_or(env("NNC_CAMPAIGN_GRAPHS", 1000), |o| o.len() as u64);
    let plan = Plan::full();
    // One case in four runs with 85% of each layer's weights zero (the sparse kernels), one
    // in four with half of its channels removed.
    let sparse = Plan { prune: Some(nnc::passes::prune::PruneSpec::Magnitude(0.85)), ..Plan::full() };
    let narrow = Plan { prune: Some(nnc::passes::prune::PruneSpec::Channels(0.5)), ..Plan::full() };
    let next = AtomicUsize::new(0);
    let executions = AtomicUsize::new(0);
    let out_of_range = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                if i >= graphs {
                    break;
                }
                let i = only.as_ref().map_or(i, |o| o[i as usize]);
                let (bytes, weights_seed) = case(seed, i);
                let model = random_model(&bytes);
                let plan = match i % 4 {
                    2 => &sparse,
                    3 => &narrow,
                    _ => &plan,
                };
                match check(&model.source, weights_seed, plan) {
                    Ok(checked) => {
                        executions.fetch_add(checked.executions, Ordering::Relaxed);
                        if checked.out_of_range {
                            out_of_range.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(f) => {
                        eprintln!("case {i} (stream {seed}) FAILED: {f}");
                        failures.lock().unwrap().push(i);
                    }
                }
                if (i + 1).is_multiple_of(500) {
                    eprintln!("{} graphs, {:.0} s", i + 1, start.elapsed().as_secs_f64());
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "campaign: {graphs} graphs (stream {seed}), {} executions compared, {} graphs out of the float range (shapes and determinism only), {} mismatches, {:.0} s",
        executions.load(Ordering::Relaxed),
        out_of_range.load(Ordering::Relaxed),
        failures.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "failing cases: {failures:?}");
}
