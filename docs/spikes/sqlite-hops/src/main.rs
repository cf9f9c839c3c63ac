//! Statements per second on one SQLite writer connection: sqlx (a thread per
//! connection, so a hop to it and back per statement) against rusqlite on the
//! calling thread, with and without other threads keeping the cores busy. Each
//! transaction is `BEGIN IMMEDIATE`, ten pairs of `INSERT` and `UPDATE` by key, and
//! `COMMIT`, in WAL mode with `synchronous=NORMAL`, as the product's writer runs them.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

const BATCHES: usize = 2000;
const PER_BATCH: usize = 10; // writes per transaction, 2 statements each

fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

fn setup(path: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; DROP TABLE IF EXISTS t; CREATE TABLE t(id TEXT PRIMARY KEY, v TEXT, n INTEGER);").unwrap();
}

fn run_sqlx(path: &str) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::{Connection, Executor};
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        c.execute("PRAGMA synchronous=NORMAL").await.unwrap();
        let mut n = 0;
        for b in 0..BATCHES {
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            for i in 0..PER_BATCH {
                let id = format!("s{b}-{i}");
                sqlx::query("INSERT INTO t(id, v, n) VALUES (?1, ?2, 0)")
                    .bind(&id)
                    .bind("value")
                    .execute(&mut c)
                    .await
                    .unwrap();
                sqlx::query("UPDATE t SET n = n + 1 WHERE id = ?1")
                    .bind(&id)
                    .execute(&mut c)
                    .await
                    .unwrap();
                n += 2;
            }
            sqlx::raw_sql("COMMIT").execute(&mut c).await.unwrap();
            n += 2;
        }
        n
    })
}

fn run_rusqlite(path: &str) -> usize {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA synchronous=NORMAL").unwrap();
    let mut n = 0;
    for b in 0..BATCHES {
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        for i in 0..PER_BATCH {
            let id = format!("r{b}-{i}");
            c.prepare_cached("INSERT INTO t(id, v, n) VALUES (?1, ?2, 0)")
                .unwrap()
                .execute((&id, "value"))
                .unwrap();
            c.prepare_cached("UPDATE t SET n = n + 1 WHERE id = ?1")
                .unwrap()
                .execute((&id,))
                .unwrap();
            n += 2;
        }
        c.execute_batch("COMMIT").unwrap();
        n += 2;
    }
    n
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args[1].clone();
    let burners: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("spike-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.db").display().to_string();
    setup(&path);
    let stop = Arc::new(AtomicBool::new(false));
    let burn: Vec<_> = (0..burners)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1000 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        std::hint::black_box(x);
                    }
                }
            })
        })
        .collect();
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let p = path.clone();
    let n = std::thread::spawn(move || {
        if mode == "sqlx" {
            run_sqlx(&p)
        } else {
            run_rusqlite(&p)
        }
    })
    .join()
    .unwrap();
    let wall = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for b in burn {
        b.join().unwrap();
    }
    let cpu = cpu_secs() - cpu0;
    println!(
        "{} burners={} statements={} wall={:.3}s -> {:.1} us/statement wall; process cpu {:.3}s (incl. burners)",
        args[1],
        burners,
        n,
        wall,
        wall * 1e6 / n as f64,
        cpu
    );
    std::fs::remove_dir_all(&dir).ok();
}
