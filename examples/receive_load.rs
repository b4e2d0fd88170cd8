//! Load generator for `hodometer receive`: how many events per second it accepts.
//!
//!   cargo run --release --example receive_load -- PORT [EVENTS] [CONNECTIONS] [BATCH]
//!
//! Sends EVENTS distinct events (default 20000) to 127.0.0.1:PORT over CONNECTIONS keep-alive
//! connections (default 16), BATCH events per `POST /track?verbose=1` JSON request (default 1,
//! as the Go publisher sends them), checks that every answer is `{"status":1,...}`, and prints
//! the rate. Loopback only; the number of requests is fixed in advance.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
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
        eprintln!("usage: receive_load PORT [EVENTS] [CONNECTIONS] [BATCH]");
        return ExitCode::from(2);
    };
    let (events, connections, batch) = (arg(1, 20_000), arg(2, 16), arg(3, 1));
    let requests_per_connection = events.div_ceil(batch * connections);
    let run = std::process::id();

    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|connection| {
            std::thread::spawn(move || {
                send_all(port, run, connection, requests_per_connection, batch)
            })
        })
        .collect();
    let mut sent = 0;
    for worker in workers {
        match worker.join() {
            Ok(Ok(count)) => sent += count,
            Ok(Err(error)) => {
                eprintln!("receive_load: {error}");
                return ExitCode::FAILURE;
            }
            Err(_) => return ExitCode::FAILURE,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{sent} events in {:.0} requests of {batch} over {connections} connections: {seconds:.2} s, {:.0} events/s",
        sent as f64 / batch as f64,
        sent as f64 / seconds
    );
    ExitCode::SUCCESS
}

fn send_all(
    port: u16,
    run: u32,
    connection: u64,
    requests: u64,
    batch: u64,
) -> Result<u64, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    let mut sent = 0;
    for request in 0..requests {
        let events: Vec<String> = (0..batch)
            .map(|i| event(&format!("{run}-{connection}-{request}-{i}")))
            .collect();
        let body = format!("[{}]", events.join(","));
        let head = format!(
            "POST /track?verbose=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        writer
            .write_all(format!("{head}{body}").as_bytes())
            .map_err(|e| e.to_string())?;
        let answer = read_answer(&mut reader)?;
        if !answer.contains("\"status\":1") {
            return Err(format!("refused: {answer}"));
        }
        sent += batch;
    }
    Ok(sent)
}

fn event(insert_id: &str) -> String {
    format!(
        r#"{{"event":"collect metrics","properties":{{"token":"e943e8a2ebd1352338ecac1f9fde8c7c","distinct_id":"6f1c7b9e-2d0a-4c55-9a43-1f0e6f1d2a11","time":1700000000,"ip":"0","$insert_id":"{insert_id}","model_count":24,"server_count":4,"server_memory_gb_sum":16.5}}}}"#
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
