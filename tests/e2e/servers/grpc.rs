//! One REAPI GetCapabilities call spoken by hand over HTTP/2 (prior knowledge, no TLS): proof that
//! a gRPC server is up and serving REAPI, without a gRPC client in the test support. Headers go
//! as HPACK literals without indexing or Huffman coding, which every server must accept.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PATH: &str = "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities";

/// The serialized `ServerCapabilities` of the server on 127.0.0.1:`port` (instance ""), or why
/// there is none.
pub(crate) fn get_capabilities(port: u16, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(frame(HEADERS, END_HEADERS, 1, &request_headers(port)));
    // An empty GetCapabilitiesRequest: uncompressed, length 0.
    out.extend(frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]));
    s.write_all(&out).map_err(|e| format!("send: {e}"))?;
    read_reply(&mut s)
}

fn read_reply(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut message = Vec::new();
    loop {
        let (kind, flags, stream, payload) = read_frame(s)?;
        match kind {
            SETTINGS if flags & ACK == 0 => send(s, frame(SETTINGS, ACK, 0, &[]))?,
            PING if flags & ACK == 0 => send(s, frame(PING, ACK, 0, &payload))?,
            DATA if stream == 1 => message.extend(payload),
            RST_STREAM | GOAWAY => return Err(format!("the server reset the call (frame {kind})")),
            _ => {}
        }
        let ended = flags & END_STREAM != 0 && stream == 1 && (kind == DATA || kind == HEADERS);
        if ended {
            // A gRPC error is trailers only, with no message.
            return match message.get(5..) {
                Some(body) => Ok(body.to_vec()),
                None => Err("the call ended without a message (a gRPC error status)".into()),
            };
        }
    }
}

fn read_frame(s: &mut TcpStream) -> Result<(u8, u8, u32, Vec<u8>), String> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).map_err(|e| format!("read: {e}"))?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)
        .map_err(|e| format!("read: {e}"))?;
    Ok((head[3], head[4], stream, payload))
}

fn send(s: &mut TcpStream, bytes: Vec<u8>) -> Result<(), String> {
    s.write_all(&bytes).map_err(|e| format!("send: {e}"))
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

fn request_headers(port: u16) -> Vec<u8> {
    let authority = format!("127.0.0.1:{port}");
    let fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", PATH),
        (":authority", authority.as_str()),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    let mut block = Vec::new();
    for (name, value) in fields {
        // Literal without indexing, new name; every length here is below 127 (one byte).
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend(name.as_bytes());
        block.push(value.len() as u8);
        block.extend(value.as_bytes());
    }
    block
}

/// A protobuf field's value: a varint, or bytes (length-delimited, or a fixed-width field's raw).
#[derive(Debug, PartialEq)]
pub(crate) enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The top-level fields of a protobuf message, as (number, value); None when it is malformed.
pub(crate) fn fields(mut buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let value = match key & 7 {
            0 => Field::Varint(varint(&mut buf)?),
            2 => {
                let len = varint(&mut buf)? as usize;
                let (bytes, rest) = (buf.get(..len)?, buf.get(len..)?);
                buf = rest;
                Field::Bytes(bytes)
            }
            1 => skip(&mut buf, 8)?,
            5 => skip(&mut buf, 4)?,
            _ => return None,
        };
        out.push((key >> 3, value));
    }
    Some(out)
}

fn skip<'a>(buf: &mut &'a [u8], n: usize) -> Option<Field<'a>> {
    let bytes = buf.get(..n)?;
    *buf = buf.get(n..)?;
    Some(Field::Bytes(bytes))
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}
