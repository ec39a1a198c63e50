//! The HTTP/1.1 Docker speaks to a plugin: one POST per connection with a JSON body (Content-Length), one
//! JSON answer. Nothing else of HTTP is needed, so nothing else is implemented: the answer closes the
//! connection, which Docker's client accepts.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

/// Requests are small (a network's options at most); a larger body is refused, not buffered.
const MAX_BODY: usize = 1 << 20;
const MAX_HEADER_LINES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// Reads one request from `stream`.
pub fn read_request(stream: &UnixStream) -> io::Result<Request> {
    let mut reader = BufReader::new(stream);
    read_from(&mut reader)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn read_from(reader: &mut impl BufRead) -> io::Result<Request> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(invalid("not an HTTP request line"));
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut length = 0usize;
    for _ in 0..MAX_HEADER_LINES {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(invalid("connection closed inside the headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body)?;
            return Ok(Request { method, path, body });
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid("bad Content-Length"))?;
                if length > MAX_BODY {
                    return Err(invalid("request body too large"));
                }
            } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
                return Err(invalid("chunked bodies are not supported"));
            }
        }
    }
    Err(invalid("too many header lines"))
}

/// Writes `body` as a 200 answer of the plugin API's media type and closes the exchange.
pub fn write_json(mut stream: &UnixStream, body: &serde_json::Value) -> io::Result<()> {
    let text = body.to_string();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.plugins.v1+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(text.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_post_with_its_body() {
        let raw =
            b"POST /NetworkDriver.Join HTTP/1.1\r\nHost: plugin\r\ncontent-length: 2\r\n\r\n{}";
        let req = read_from(&mut &raw[..]).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/NetworkDriver.Join");
        assert_eq!(req.body, b"{}");
    }

    #[test]
    fn refuses_what_it_does_not_speak() {
        assert!(read_from(&mut &b"garbage\r\n\r\n"[..]).is_err());
        let chunked = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(read_from(&mut &chunked[..]).is_err());
        let huge = b"POST /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n";
        assert!(read_from(&mut &huge[..]).is_err());
    }
}
