//! Load generator for `hodometer receive`: how many events per second it accepts, and how
//! long each request waits for its answer.
//!
//!   cargo run --release --example receive_load -- PORT [EVENTS] [CONNECTIONS] [BATCH] [CLUSTERS]
//!   cargo run --release --example receive_load -- stall PORT [CONNECTIONS] [SECONDS]
//!
//! Sends EVENTS distinct events (default 20000) to 127.0.0.1:PORT over CONNECTIONS keep-alive
//! connections (default 16), BATCH events per `POST /track?verbose=1` JSON request (default 1,
//! as the Go publisher sends them), from CLUSTERS distinct cluster ids (default 1), checks that
//! every answer is `{"status":1,...}`, and prints the rate and the p50/p99 request latency.
//! Loopback only; the number of requests is fixed in advance.
//!
//! `stall` opens CONNECTIONS connections (default 2000) that each send half a request's headers
//! and then nothing, holds them SECONDS (default 5), and reports how many the receiver had
//! closed or refused by then.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("stall") {
        return stall();
    }
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap_or(0))
        .collect();
    let arg = |i: usize, default: u64| args.get(i).copied().filter(|v| *v > 0).unwrap_or(default);
    let Some(port) = args
        .first()
        .and_then(|p| u16::try_from(*p).ok())
        .filter(|p| *p > 0)
    else {
        eprintln!("usage: receive_load PORT [EVENTS] [CONNECTIONS] [BATCH] [CLUSTERS]");
        return ExitCode::from(2);
    };
    let (events, connections, batch) = (arg(1, 20_000), arg(2, 16), arg(3, 1));
    let clusters = arg(4, 1);
    let requests_per_connection = events.div_ceil(batch * connections);
    let run = std::process::id();

    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|connection| {
            std::thread::spawn(move || {
                send_all(
                    port,
                    run,
                    connection,
                    requests_per_connection,
                    batch,
                    clusters,
                )
            })
        })
        .collect();
    let mut sent = 0;
    let mut latencies = Vec::new();
    for worker in workers {
        match worker.join() {
            Ok(Ok((count, waited))) => {
                sent += count;
                latencies.extend(waited);
            }
            Ok(Err(error)) => {
                eprintln!("receive_load: {error}");
                return ExitCode::FAILURE;
            }
            Err(_) => return ExitCode::FAILURE,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let at = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len());
        latencies[at - 1].as_secs_f64() * 1000.0
    };
    println!(
        "{sent} events in {:.0} requests of {batch} over {connections} connections: {seconds:.2} s, {:.0} events/s, latency p50 {:.2} ms p99 {:.2} ms",
        sent as f64 / batch as f64,
        sent as f64 / seconds,
        percentile(0.50),
        percentile(0.99),
    );
    ExitCode::SUCCESS
}

/// Holds connections that never finish their headers, as a slowloris does.
fn stall() -> ExitCode {
    let args: Vec<u64> = std::env::args()
        .skip(2)
        .map(|a| a.parse().unwrap_or(0))
        .collect();
    let Some(port) = args
        .first()
        .and_then(|p| u16::try_from(*p).ok())
        .filter(|p| *p > 0)
    else {
        eprintln!("usage: receive_load stall PORT [CONNECTIONS] [SECONDS]");
        return ExitCode::from(2);
    };
    let wanted = args.get(1).copied().filter(|n| *n > 0).unwrap_or(2000);
    let hold = args.get(2).copied().filter(|n| *n > 0).unwrap_or(5);
    let mut held = Vec::new();
    for _ in 0..wanted {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut stream) => {
                let _ = stream.write_all(b"POST /track HTTP/1.1\r\nHost: x\r\nX-Slow: ");
                held.push(stream);
            }
            Err(error) => {
                eprintln!("receive_load: connect: {error}");
                break;
            }
        }
    }
    println!("stall: {} connections open, holding {hold} s", held.len());
    std::thread::sleep(std::time::Duration::from_secs(hold));
    let mut closed = 0;
    for stream in &mut held {
        let _ = stream.set_nonblocking(true);
        let mut bytes = [0u8; 512];
        // Closed, reset or answered (the 503 refusal): the receiver let go of it.
        if !matches!(stream.read(&mut bytes), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        {
            closed += 1;
        }
    }
    println!("stall: after {hold} s the receiver had closed or refused {closed}");
    ExitCode::SUCCESS
}

fn send_all(
    port: u16,
    run: u32,
    connection: u64,
    requests: u64,
    batch: u64,
    clusters: u64,
) -> Result<(u64, Vec<std::time::Duration>), String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    let mut sent = 0;
    let mut latencies = Vec::with_capacity(requests as usize);
    for request in 0..requests {
        let events: Vec<String> = (0..batch)
            .map(|i| {
                let cluster = (connection * requests * batch + request * batch + i) % clusters;
                event(&format!("{run}-{connection}-{request}-{i}"), cluster)
            })
            .collect();
        let body = format!("[{}]", events.join(","));
        let head = format!(
            "POST /track?verbose=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let asked = Instant::now();
        writer
            .write_all(format!("{head}{body}").as_bytes())
            .map_err(|e| e.to_string())?;
        let answer = read_answer(&mut reader)?;
        latencies.push(asked.elapsed());
        if !answer.contains("\"status\":1") {
            return Err(format!("refused: {answer}"));
        }
        sent += batch;
    }
    Ok((sent, latencies))
}

fn event(insert_id: &str, cluster: u64) -> String {
    format!(
        r#"{{"event":"collect metrics","properties":{{"token":"e943e8a2ebd1352338ecac1f9fde8c7c","distinct_id":"6f1c7b9e-2d0a-4c55-9a43-{cluster:012}","time":1700000000,"ip":"0","$insert_id":"{insert_id}","model_count":24,"server_count":4,"server_memory_gb_sum":16.5}}}}"#
    )
}

/// Reads one response with a Content-Length body and returns the body.
fn read_answer(reader: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().map_err(|_| "bad Content-Length")?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}
