// Tokio peer for weft's echo benchmark (bench/servers.py): a task per connection copying what
// it reads back. usage: tokio-net-peer echo PORT   (TOKIO_WORKERS sets the worker threads)
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 || args[1] != "echo" {
        eprintln!("usage: tokio-net-peer echo PORT");
        std::process::exit(2);
    }
    let workers: usize = std::env::var("TOKIO_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_io()
        .build()
        .unwrap();
    let addr = format!("127.0.0.1:{}", args[2]);
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await.unwrap();
        println!("tokio-net-peer: listening");
        loop {
            let (mut sock, _) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => continue,
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    let n = match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if sock.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}
