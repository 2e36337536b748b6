//! A minimal HTTP/1.1 server for the three probe/scrape paths. Hand-rolled on tokio rather than
//! pulling in hyper: the surface is three GET routes answered with `Connection: close`, so a
//! bounded request-head reader and a fixed response writer are all that is needed.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::shared::Shared;
use prometheus::Registry;

/// Largest request head accepted; probes and scrapers send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// A client that does not finish its request head in this time is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Accepts forever; each connection gets one request and one response.
pub async fn serve(listener: TcpListener, app: Arc<Shared>, registry: Registry) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                tokio::spawn(handle(sock, app.clone(), registry.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The method and path of a request head, or the status to refuse it with.
fn parse_request_line(head: &[u8]) -> Result<(&str, &str), u16> {
    let line_end = head.iter().position(|&b| b == b'\r').ok_or(400u16)?;
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| 400u16)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(400);
    }
    let path = target.split('?').next().unwrap_or(target);
    Ok((method, path))
}

async fn read_head(sock: &mut TcpStream) -> Result<Vec<u8>, u16> {
    let mut buf = Vec::with_capacity(512);
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(buf);
        }
        if buf.len() >= MAX_HEAD {
            return Err(431);
        }
        let mut chunk = [0u8; 1024];
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(0),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn handle(mut sock: TcpStream, app: Arc<Shared>, registry: Registry) {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut sock)).await {
        Ok(Ok(h)) => h,
        Ok(Err(0)) | Err(_) => return,
        Ok(Err(status)) => {
            return write(&mut sock, Response::text(status, "bad request\n"), false).await;
        }
    };
    let (response, head_only) = match parse_request_line(&head) {
        Err(status) => (Response::text(status, "bad request\n"), false),
        Ok((method, path)) if method == "GET" || method == "HEAD" => {
            (super::route(&app, &registry, path).await, method == "HEAD")
        }
        Ok(_) => (Response::text(405, "only GET and HEAD\n"), false),
    };
    write(&mut sock, response, head_only).await;
}

async fn write(sock: &mut TcpStream, r: Response, head_only: bool) {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    let _ = sock.write_all(head.as_bytes()).await;
    if !head_only {
        let _ = sock.write_all(&r.body).await;
    }
    let _ = sock.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_is_parsed() {
        assert_eq!(
            parse_request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(("GET", "/metrics"))
        );
        assert_eq!(parse_request_line(b"garbage\r\n\r\n"), Err(400));
        assert_eq!(parse_request_line(b"GET / SPDY\r\n\r\n"), Err(400));
    }
}
