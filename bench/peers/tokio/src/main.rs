//! Tokio peer (multi-thread runtime) for weft's benchmark driver.
//!
//! usage: tokio-peer <workload> <n> [k | -k <k>] [-w <workers>]
//!        (workers default 2 -> worker_threads; k: gather only, default 10)
//! prints: tokio <workload> n=<N> r=<result> ms=<wall ms> rss_kb=<VmHWM>
//!
//! Timing INCLUDES runtime start: the clock starts just before the multi-thread runtime is
//! built. The root task is spawned onto the runtime (so all work runs on the <workers> worker
//! threads, not on the thread calling block_on) and the clock stops once it has finished.
//! "spawn" = tokio::spawn + awaiting the JoinHandle; a "direct call" = awaiting a boxed future.
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

type BoxFut = Pin<Box<dyn Future<Output = i64> + Send>>;

/// Lace style: spawn fib(n-1), compute fib(n-2) by a direct (boxed, recursive) call, wait.
fn fib(n: i64) -> BoxFut {
    Box::pin(async move {
        if n < 2 {
            return n;
        }
        let h = tokio::spawn(fib(n - 1));
        let b = fib(n - 2).await;
        h.await.unwrap() + b
    })
}

fn skynet(num: i64, size: i64) -> BoxFut {
    Box::pin(async move {
        if size == 1 {
            return num;
        }
        let sub = size / 10;
        let hs: Vec<_> = (0..10)
            .map(|i| tokio::spawn(skynet(num + i * sub, sub)))
            .collect();
        let mut s = 0;
        for h in hs {
            s += h.await.unwrap();
        }
        s
    })
}

async fn gather_each<F, Fut>(n: i64, body: F) -> i64
where
    F: Fn(i64) -> Fut,
    Fut: Future<Output = i64> + Send + 'static,
{
    let hs: Vec<_> = (0..n).map(|i| tokio::spawn(body(i))).collect();
    let mut s = 0;
    for h in hs {
        s += h.await.unwrap();
    }
    s
}

// Synchronisation and channels (weft issue 11): pingpong over two rendezvous-like channels
// (tokio has no capacity-0 mpsc: capacity 1 is the nearest), 4P/4C through mpsc(1024) (a
// single consumer: tokio's mpsc is multi-producer single-consumer, so the 4 consumers share
// the receiver behind a tokio Mutex), and 8 tasks on a contended tokio::sync::Mutex.
async fn pingpong(n: i64) -> i64 {
    let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<i64>(1);
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<i64>(1);
    let h = tokio::spawn(async move {
        for _ in 0..n {
            let v = ping_rx.recv().await.unwrap();
            pong_tx.send(v).await.unwrap();
        }
    });
    let mut s = 0;
    for _ in 0..n {
        ping_tx.send(1).await.unwrap();
        s += pong_rx.recv().await.unwrap();
    }
    h.await.unwrap();
    s
}

async fn chan_throughput(n: i64) -> i64 {
    let (tx, rx) = tokio::sync::mpsc::channel::<i64>(1024);
    let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
    let per = n / 4;
    let mut hs = Vec::new();
    for _ in 0..4 {
        let tx = tx.clone();
        hs.push(tokio::spawn(async move {
            for _ in 0..per {
                tx.send(1).await.unwrap();
            }
            0
        }));
    }
    drop(tx);
    for _ in 0..4 {
        let rx = rx.clone();
        hs.push(tokio::spawn(async move {
            let mut s = 0;
            loop {
                let v = rx.lock().await.recv().await;
                match v {
                    Some(v) => s += v,
                    None => return s,
                }
            }
        }));
    }
    let mut total = 0;
    for h in hs {
        total += h.await.unwrap();
    }
    total
}

async fn mutex_contended(n: i64) -> i64 {
    let m = std::sync::Arc::new(tokio::sync::Mutex::new(0i64));
    let per = n / 8;
    let mut hs = Vec::new();
    for _ in 0..8 {
        let m = m.clone();
        hs.push(tokio::spawn(async move {
            for _ in 0..per {
                *m.lock().await += 1;
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    let v = *m.lock().await;
    v
}

async fn root(wl: String, n: i64, k: i64) -> i64 {
    match wl.as_str() {
        "fib" => fib(n).await,
        "skynet" => skynet(0, n).await,
        "spawn" => gather_each(n, |_| async { 1 }).await,
        "yield" => {
            let per = n / 1000;
            gather_each(1000, move |_| async move {
                let mut c = 0;
                for _ in 0..per {
                    tokio::task::yield_now().await;
                    c += 1;
                }
                c
            })
            .await
        }
        "sleep" => {
            gather_each(n, |i| async move {
                tokio::time::sleep(Duration::from_millis((i * 7919 % 1000) as u64)).await;
                i
            })
            .await
        }
        "cancel" => {
            // n tasks sleep an hour; every JoinHandle is aborted, then awaited
            let hs: Vec<_> = (0..n)
                .map(|_| {
                    tokio::spawn(async {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        0i64
                    })
                })
                .collect();
            for h in &hs {
                h.abort();
            }
            let mut c = 0;
            for h in hs {
                if let Err(e) = h.await {
                    if e.is_cancelled() {
                        c += 1;
                    }
                }
            }
            c
        }
        "gather" => {
            gather_each(n, move |_| async move {
                let mut c = 0;
                for _ in 0..k {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    c += 1;
                }
                c
            })
            .await
        }
        "pingpong" => pingpong(n).await,
        "chan" => chan_throughput(n).await,
        "mutex" => mutex_contended(n).await,
        _ => unreachable!(),
    }
}

/// inject: 8 std threads (not workers) spawn n tasks in all through a runtime Handle, then each
/// awaits its own JoinHandles (Handle::block_on); the sum of the results.
fn inject(handle: &tokio::runtime::Handle, n: i64) -> i64 {
    const SPAWNERS: i64 = 8;
    let threads: Vec<_> = (0..SPAWNERS)
        .map(|s| {
            let h = handle.clone();
            let count = n / SPAWNERS + i64::from(s < n % SPAWNERS);
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..count).map(|_| h.spawn(async { 1i64 })).collect();
                h.block_on(async {
                    let mut sum = 0;
                    for j in hs {
                        sum += j.await.unwrap();
                    }
                    sum
                })
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

fn peak_rss_kb() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(-1)
}

fn usage() -> ! {
    eprintln!(
        "usage: tokio-peer <fib|skynet|spawn|yield|sleep|cancel|gather|inject|pingpong|chan|mutex> <n> [k | -k k] [-w workers]"
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pos: Vec<&str> = Vec::new();
    let mut workers = 2usize;
    let mut kopt: Option<i64> = None;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "-k" && i + 1 < args.len() {
            kopt = Some(args[i + 1].parse().unwrap_or_else(|_| usage()));
            i += 2;
            continue;
        }
        if args[i] == "-w" && i + 1 < args.len() {
            workers = args[i + 1].parse().unwrap_or_else(|_| usage());
            i += 2;
            continue;
        }
        pos.push(&args[i]);
        i += 1;
    }
    if pos.len() < 2 || workers < 1 {
        usage();
    }
    let wl = pos[0].to_string();
    let n: i64 = pos[1].parse().unwrap_or_else(|_| usage());
    let k: i64 = match kopt {
        Some(k) => k,
        None if pos.len() > 2 => pos[2].parse().unwrap_or_else(|_| usage()),
        None => 10,
    };
    if n < 0
        || !matches!(
            wl.as_str(),
            "fib" | "skynet" | "spawn" | "yield" | "sleep" | "cancel" | "gather" | "inject"
                | "pingpong" | "chan" | "mutex"
        )
    {
        usage();
    }

    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()
        .expect("tokio runtime");
    let r = if wl == "inject" {
        inject(rt.handle(), n)
    } else {
        let h = rt.spawn(root(wl.clone(), n, k));
        rt.block_on(h).unwrap()
    };
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    println!(
        "tokio {} n={} r={} ms={:.1} rss_kb={}",
        wl,
        n,
        r,
        ms,
        peak_rss_kb()
    );
    drop(rt);
}
