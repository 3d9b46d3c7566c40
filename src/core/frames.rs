//! Decoder for the multiplexed stream of podman's attach and exec endpoints: frames of an
//! 8-byte header (stream id, 3 zero bytes, big-endian u32 length) and a payload.
//!
//! podman-api's own decoder panics on an unknown stream id and silently ends on a short
//! payload; a panic must never reach Python and a lost byte is a lost log line, so this one
//! returns errors instead.

use futures_util::io::{AsyncRead, AsyncReadExt};

use crate::core::error::{Error, Result};
use crate::core::sink::{OutputSink, Stream};

/// Largest frame we accept; podman sends at most a few tens of KiB per frame.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// One decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Output(Stream, Vec<u8>),
    /// Stream id 3: an error reported in-band by the engine.
    EngineError(String),
    /// Stream id 0 (stdin echo): ignored.
    Stdin,
}

/// Reads the next frame; `Ok(None)` at a clean end of stream (between frames).
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Frame>> {
    let mut header = [0u8; 8];
    let mut filled = 0;
    while filled < header.len() {
        let n = reader
            .read(&mut header[filled..])
            .await
            .map_err(|e| Error::container("reading container output", e))?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(Error::container(
                "reading container output",
                "stream ended inside a frame header",
            ));
        }
        filled += n;
    }
    let [id, _, _, _, a, b, c, d] = header;
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if len > MAX_FRAME {
        return Err(Error::container(
            "reading container output",
            format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await.map_err(|e| {
        Error::container("reading container output", format!("stream ended inside a frame: {e}"))
    })?;
    Ok(Some(match id {
        0 => Frame::Stdin,
        1 => Frame::Output(Stream::Stdout, payload),
        2 => Frame::Output(Stream::Stderr, payload),
        3 => Frame::EngineError(String::from_utf8_lossy(&payload).into_owned()),
        other => {
            return Err(Error::container(
                "reading container output",
                format!("unknown stream id {other} in frame header"),
            ))
        }
    }))
}

/// Copies every frame to `sink` until the stream ends. Returns the total bytes delivered.
pub async fn pump<R: AsyncRead + Unpin>(reader: &mut R, sink: &mut dyn OutputSink) -> Result<u64> {
    let mut total = 0u64;
    while let Some(frame) = read_frame(reader).await? {
        match frame {
            Frame::Output(stream, data) => {
                total += data.len() as u64;
                sink.write(stream, &data).map_err(Error::Sink)?;
            }
            Frame::EngineError(message) => return Err(Error::container("container output", message)),
            Frame::Stdin => {}
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sink::CaptureSink;
    use futures_util::io::Cursor;

    fn frame(id: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![id, 0, 0, 0];
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn streams_are_kept_apart_and_bytes_unchanged() {
        let mut bytes = frame(1, b"out \xff partial");
        bytes.extend(frame(2, b"err\n"));
        bytes.extend(frame(0, b"ignored"));
        bytes.extend(frame(1, b" line\n"));
        let mut sink = CaptureSink::default();
        let total = block_on(pump(&mut Cursor::new(bytes), &mut sink)).unwrap();
        assert_eq!(sink.stdout, b"out \xff partial line\n");
        assert_eq!(sink.stderr, b"err\n");
        assert_eq!(total, 23);
    }

    #[test]
    fn malformed_streams_are_errors_not_panics() {
        for bytes in [frame(7, b"x"), frame(1, b"abc")[..9].to_vec(), vec![1, 0, 0]] {
            let mut sink = CaptureSink::default();
            let err = block_on(pump(&mut Cursor::new(bytes), &mut sink)).unwrap_err();
            assert!(matches!(err, Error::Container { .. }), "{err:?}");
        }
        let err = block_on(pump(&mut Cursor::new(frame(3, b"oci runtime error")), &mut CaptureSink::default()))
            .unwrap_err();
        assert!(err.to_string().contains("oci runtime error"));
    }
}
