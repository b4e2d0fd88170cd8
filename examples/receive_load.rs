//! Load generator for `hodometer receive`: how many events per second it accepts, and how
//! long each request waits for its answer.
//!
//!   cargo run --release --example receive_load -- PORT [EVENTS] [CONNECTIONS] [BATCH] [CLUSTERS]
//!   cargo run --release --example receive_load -- stall PORT [CONNECTIONS] [SECONDS]
//!
//! Sends EVENTS distinct events (default 20000) to 127.0.0.1:PORT over CONNECTIONS keep-alive
//! connections (default 16), BATCH events per `POST /track?verbose=1` JSON request (default 1,
//! as the Go publisher sends them), from CLUSTERS distinct cluster ids (default 1), checks that
//! every answer is `{"status":1,...}`, and prints the rate, the p50/p99 request latency and its
//! own CPU time. Loopback only; the number of requests is fixed in advance.
//!
//! The generator shares the machine's cores with the receiver, so it is kept cheap: one thread
//! drives every connection, each request is serialised once and only the digits of its ids
//! are rewritten in place, and answers are read into a reused buffer.
//!
//! `stall` opens CONNECTIONS connections (default 2000) that each send half a request's headers
//! and then nothing, holds them SECONDS (default 5), and reports how many the receiver had
//! closed or refused by then.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    let load = Load {
        port,
        run: std::process::id(),
        connections: arg(2, 16),
        batch: arg(3, 1),
        clusters: arg(4, 1),
        requests: 0,
    };
    let load = Load {
        requests: arg(1, 20_000).div_ceil(load.batch * load.connections),
        ..load
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("receive_load: {error}");
            return ExitCode::FAILURE;
        }
    };
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let results = runtime.block_on(futures::future::join_all(
        (0..load.connections).map(|connection| send_all(&load, connection)),
    ));
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let mut latencies = Vec::new();
    for result in results {
        match result {
            Ok(waited) => latencies.extend(waited),
            Err(error) => {
                eprintln!("receive_load: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let requests = latencies.len();
    let sent = requests as u64 * load.batch;
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let at = ((requests as f64 * p).ceil() as usize).clamp(1, requests.max(1));
        latencies
            .get(at - 1)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{sent} events in {requests} requests of {} over {} connections: {seconds:.2} s, {:.0} events/s, latency p50 {:.2} ms p99 {:.2} ms; generator CPU {cpu:.2} s",
        load.batch,
        load.connections,
        sent as f64 / seconds,
        percentile(0.50),
        percentile(0.99),
    );
    ExitCode::SUCCESS
}

/// User and system CPU time of this process so far, in seconds.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
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

struct Load {
    port: u16,
    /// Distinguishes this run's `$insert_id`s from an earlier run's against the same store.
    run: u32,
    connections: u64,
    /// Requests per connection.
    requests: u64,
    batch: u64,
    clusters: u64,
}

/// Digits of the per-connection event number and of the cluster number inside a request.
const EVENT_DIGITS: usize = 10;
const CLUSTER_DIGITS: usize = 12;

/// One connection's request, serialised once: between requests only the digits of each
/// event's `$insert_id` and cluster id change, and they keep their width, so the length does.
struct Template {
    bytes: Vec<u8>,
    /// Per event: where its event number and its cluster number start.
    slots: Vec<(usize, usize)>,
}

impl Template {
    fn new(load: &Load, connection: u64) -> Template {
        let mut body = b"[".to_vec();
        let mut slots = Vec::new();
        for i in 0..load.batch {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(
                br#"{"event":"collect metrics","properties":{"token":"e943e8a2ebd1352338ecac1f9fde8c7c","distinct_id":"6f1c7b9e-2d0a-4c55-9a43-"#,
            );
            let cluster = body.len();
            body.extend_from_slice(&[b'0'; CLUSTER_DIGITS]);
            body.extend_from_slice(
                format!(
                    r#"","time":1700000000,"ip":"0","$insert_id":"{:010}-{connection:04}-"#,
                    load.run
                )
                .as_bytes(),
            );
            let event = body.len();
            body.extend_from_slice(&[b'0'; EVENT_DIGITS]);
            body.extend_from_slice(
                br#"","model_count":24,"server_count":4,"server_memory_gb_sum":16.5}}"#,
            );
            slots.push((event, cluster));
        }
        body.push(b']');
        let head = format!(
            "POST /track?verbose=1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            load.port,
            body.len()
        );
        let mut bytes = head.into_bytes();
        let offset = bytes.len();
        bytes.extend_from_slice(&body);
        let slots = slots
            .into_iter()
            .map(|(event, cluster)| (offset + event, offset + cluster))
            .collect();
        Template { bytes, slots }
    }

    /// Makes the template request number `request` of `connection`.
    fn fill(&mut self, load: &Load, connection: u64, request: u64) {
        for (i, &(event, cluster)) in (0_u64..).zip(&self.slots) {
            let number = request * load.batch + i;
            let cluster_number = (connection * load.requests * load.batch + number) % load.clusters;
            put_digits(&mut self.bytes[event..event + EVENT_DIGITS], number);
            put_digits(
                &mut self.bytes[cluster..cluster + CLUSTER_DIGITS],
                cluster_number,
            );
        }
    }
}

/// Writes `value` zero-padded into all of `digits`.
fn put_digits(digits: &mut [u8], mut value: u64) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Sends one connection's share and returns how long each request waited for its answer.
async fn send_all(load: &Load, connection: u64) -> Result<Vec<Duration>, String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", load.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut template = Template::new(load, connection);
    let mut answer = Vec::with_capacity(1024);
    let mut latencies = Vec::with_capacity(load.requests as usize);
    for request in 0..load.requests {
        template.fill(load, connection, request);
        let asked = Instant::now();
        stream
            .write_all(&template.bytes)
            .await
            .map_err(|e| e.to_string())?;
        let body = read_answer(&mut stream, &mut answer).await?;
        latencies.push(asked.elapsed());
        if !body.windows(10).any(|w| w == b"\"status\":1") {
            return Err(format!("refused: {}", String::from_utf8_lossy(body)));
        }
    }
    Ok(latencies)
}

/// Reads one response with a `Content-Length` body into `buffer` and returns the body.
async fn read_answer<'a>(
    stream: &mut tokio::net::TcpStream,
    buffer: &'a mut Vec<u8>,
) -> Result<&'a [u8], String> {
    buffer.clear();
    let (head, length) = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break (end + 4, content_length(&buffer[..end])?);
        }
        read_more(stream, buffer).await?;
    };
    while buffer.len() < head + length {
        read_more(stream, buffer).await?;
    }
    Ok(&buffer[head..head + length])
}

async fn read_more(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> Result<(), String> {
    buffer.reserve(1024);
    match stream.read_buf(buffer).await {
        Ok(0) => Err("connection closed".into()),
        Ok(_) => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

fn content_length(head: &[u8]) -> Result<usize, String> {
    head.split(|b| *b == b'\n')
        .find_map(|line| {
            let text = std::str::from_utf8(line).ok()?;
            let (name, value) = text.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| "an answer without a valid Content-Length".into())
}
