//! The load itself: `--clients` browsers signing in for `--seconds`, and the
//! report of what that cost.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use url::Url;

use crate::{
    Args,
    cpu::{self, Usage, Watched},
    flow::{Timings, new_client, one_flow},
};

#[derive(Default)]
struct Samples {
    callback: Vec<Duration>,
    callback_to_ok: Vec<Duration>,
    flow: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

/// `--clients` browsers signing in for `--seconds`; prints what it measured and
/// returns how many sign-ins completed.
pub async fn sign_ins(
    base: &Url,
    provider: &str,
    args: &Args,
    watched: &[Watched],
) -> anyhow::Result<usize> {
    let samples = Arc::new(Mutex::new(Samples::default()));
    let cpu_before = cpu::sample(watched);
    let machine_before = cpu::machine();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let budget = Arc::new(std::sync::atomic::AtomicUsize::new(args.max_flows));
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let (samples, budget, base) = (samples.clone(), budget.clone(), base.clone());
        let provider = provider.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < deadline
                && budget
                    .fetch_update(
                        std::sync::atomic::Ordering::SeqCst,
                        std::sync::atomic::Ordering::SeqCst,
                        |b| b.checked_sub(1),
                    )
                    .is_ok()
            {
                n += 1;
                let email = format!("bench-{client}-{n}@example.com");
                let result = match new_client(None) {
                    Ok(client) => one_flow(&client, &base, &provider, &email, true).await,
                    Err(e) => Err(e),
                };
                let mut s = samples.lock().unwrap();
                match result {
                    Ok(Timings {
                        callback,
                        callback_to_ok,
                        flow,
                        ..
                    }) => {
                        s.callback.push(callback);
                        s.callback_to_ok.push(callback_to_ok);
                        s.flow.push(flow);
                    }
                    Err(e) => {
                        s.errors += 1;
                        s.first_error.get_or_insert(e.to_string());
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu::sample(watched);
    let machine_after = cpu::machine();
    let mut guard = samples.lock().unwrap();
    let s = &mut *guard;
    println!(
        "target {base}  provider {provider}  clients {}  duration {:.1} s  provider latency: token {} ms, userinfo {} ms",
        args.clients,
        elapsed.as_secs_f64(),
        args.token_latency_ms,
        args.userinfo_latency_ms
    );
    let done = s.flow.len();
    println!(
        "sign-ins {done}  errors {}  throughput {:.1} sign-ins/s",
        s.errors,
        done as f64 / elapsed.as_secs_f64()
    );
    if let Some(e) = &s.first_error {
        println!("first error: {e}");
    }
    for (name, values) in [
        ("callback request", &mut s.callback),
        ("callback -> ok (long-poll)", &mut s.callback_to_ok),
        ("whole flow", &mut s.flow),
    ] {
        values.sort();
        println!(
            "{name:<28} p50 {:>8.2} ms  p95 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
            pct(values, 0.50),
            pct(values, 0.95),
            pct(values, 0.99),
            pct(values, 1.0)
        );
    }
    print_cpu(watched, &cpu_before, &cpu_after, done, elapsed);
    if let (Some((busy0, total0)), Some((busy1, total1))) = (machine_before, machine_after) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64 * cores as f64;
        println!("machine busy {busy:.2} of {cores} cores");
    }
    anyhow::ensure!(
        done > 0 && s.errors == 0,
        "{} of {} flows failed",
        s.errors,
        done + s.errors
    );
    Ok(done)
}

/// CPU milliseconds and context switches per sign-in of each watched process, and
/// the CPU of the product's processes together (everything but the benchmark).
fn print_cpu(
    watched: &[Watched],
    before: &[Usage],
    after: &[Usage],
    done: usize,
    elapsed: Duration,
) {
    if done == 0 {
        return;
    }
    let per_sign_in = |d: Duration| d.as_secs_f64() * 1000.0 / done as f64;
    let mut product = Duration::ZERO;
    for ((w, b), a) in watched.iter().zip(before).zip(after) {
        let used = a.cpu.saturating_sub(b.cpu);
        if w.name != "benchmark" {
            product += used;
        }
        println!(
            "CPU {:<10} {:>6.2} ms per sign-in  ({:.2} cores, {:.1} context switches per sign-in)",
            w.name,
            per_sign_in(used),
            used.as_secs_f64() / elapsed.as_secs_f64(),
            a.switches.saturating_sub(b.switches) as f64 / done as f64
        );
    }
    println!(
        "CPU {:<10} {:>6.2} ms per sign-in  (everything but the benchmark)",
        "product",
        per_sign_in(product)
    );
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}
