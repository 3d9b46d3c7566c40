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
            .read(header.get_mut(filled..).unwrap_or_default())
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
        Error::container(
            "reading container output",
            format!("stream ended inside a frame: {e}"),
        )
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

/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 256 * 1024;

/// The size of the next frame if all of it is already in `buffer` (never waits).
fn buffered_frame(buffer: &[u8]) -> Option<usize> {
    let len: [u8; 4] = buffer.get(4..8)?.try_into().ok()?;
    let len = u32::from_be_bytes(len) as usize;
    (buffer.len() >= 8 + len).then_some(8 + len)
}

/// Largest write a batch of waiting chunks is merged into.
const COALESCE_LIMIT: usize = 256 * 1024;

/// How many decoded chunks may wait between the reader and the sink.
const PIPELINE_DEPTH: usize = 32;

/// [`pump`] with the socket read on a runtime worker while this task writes to the sink, so a
/// sink that does real work (a file, a Python callback) overlaps with receiving the next
/// chunks instead of stalling them. Memory stays bounded by [`PIPELINE_DEPTH`] chunks; the
/// order of chunks, and so of each stream's bytes, is unchanged. A sink error stops the
/// reader.
pub async fn pump_pipelined<R>(reader: R, sink: &mut dyn OutputSink) -> Result<u64>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(Stream, Vec<u8>)>>(PIPELINE_DEPTH);
    let reader_task = tokio::spawn(async move {
        // podman sends 8 KiB frames: read the socket in larger pieces than a frame.
        let mut reader = futures_util::io::BufReader::with_capacity(READ_BUFFER, reader);
        let mut held: Option<Frame> = None;
        loop {
            let frame = match held.take() {
                Some(frame) => Ok(Some(frame)),
                None => read_frame(&mut reader).await,
            };
            let next = match frame {
                Ok(None) => return,
                Ok(Some(Frame::Output(stream, mut data))) => {
                    // Frames of the same stream that already arrived (whole, in the buffer)
                    // travel as one chunk: fewer hand-offs and sink calls, same bytes.
                    while data.len() < COALESCE_LIMIT && buffered_frame(reader.buffer()).is_some() {
                        match read_frame(&mut reader).await {
                            Ok(Some(Frame::Output(s, more))) if s == stream => {
                                data.extend_from_slice(&more)
                            }
                            Ok(Some(Frame::Stdin)) => {}
                            Ok(other) => {
                                held = other;
                                break;
                            }
                            Err(e) => {
                                let _ = tx.send(Ok((stream, data))).await;
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        }
                    }
                    Ok((stream, data))
                }
                Ok(Some(Frame::Stdin)) => continue,
                Ok(Some(Frame::EngineError(message))) => {
                    Err(Error::container("container output", message))
                }
                Err(e) => Err(e),
            };
            let stop = next.is_err();
            if tx.send(next).await.is_err() || stop {
                return;
            }
        }
    });
    // Stops the reader on every exit path (a sink error, or this future being dropped).
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _reader = AbortOnDrop(reader_task);
    let mut total = 0u64;
    let mut held: Option<Result<(Stream, Vec<u8>)>> = None;
    loop {
        let item = match held.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => break,
            },
        };
        let (stream, mut data) = item?;
        // Chunks already waiting for the same stream go to the sink as one write (podman
        // sends 8 KiB frames; a Python sink pays per call). Order is kept: a chunk of the
        // other stream, or an error, ends the batch and is handled next.
        while data.len() < COALESCE_LIMIT {
            match rx.try_recv() {
                Ok(Ok((next_stream, next))) if next_stream == stream => {
                    data.extend_from_slice(&next)
                }
                Ok(other) => {
                    held = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        total += data.len() as u64;
        sink.write(stream, &data).map_err(Error::Sink)?;
    }
    Ok(total)
}

/// Streams all of the container's output to `sink` ([`pump_pipelined`]), then tells the sink
/// the stream ended, also after an error; the first failure is returned.
pub async fn pump_to_end<R>(reader: R, sink: &mut dyn OutputSink) -> Result<u64>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let result = pump_pipelined(reader, &mut *sink).await;
    let finished = sink.finish().map_err(Error::Sink);
    result.and_then(|n| finished.map(|()| n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unpipelined reference the pipelined pump is checked against.
    async fn pump<R: AsyncRead + Unpin>(reader: &mut R, sink: &mut dyn OutputSink) -> Result<u64> {
        let mut total = 0u64;
        while let Some(frame) = read_frame(reader).await? {
            match frame {
                Frame::Output(stream, data) => {
                    total += data.len() as u64;
                    sink.write(stream, &data).map_err(Error::Sink)?;
                }
                Frame::EngineError(message) => {
                    return Err(Error::container("container output", message))
                }
                Frame::Stdin => {}
            }
        }
        Ok(total)
    }

    use crate::core::sink::CaptureSink;
    use futures_util::io::Cursor;

    fn frame(id: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![id, 0, 0, 0];
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
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
    fn the_pipelined_pump_delivers_the_same_bytes_in_order() {
        let mut bytes = Vec::new();
        for i in 0..500u32 {
            bytes.extend(frame(1 + (i % 2) as u8, format!("chunk {i}\n").as_bytes()));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let mut piped = CaptureSink::default();
        let total = rt
            .block_on(pump_pipelined(Cursor::new(bytes.clone()), &mut piped))
            .unwrap();
        let mut plain = CaptureSink::default();
        block_on(pump(&mut Cursor::new(bytes), &mut plain)).unwrap();
        assert_eq!((piped.stdout, piped.stderr), (plain.stdout, plain.stderr));
        assert!(total > 0);
        let err = rt
            .block_on(pump_pipelined(
                Cursor::new(frame(9, b"x")),
                &mut CaptureSink::default(),
            ))
            .unwrap_err();
        assert!(matches!(err, Error::Container { .. }));
    }

    #[test]
    fn malformed_streams_are_errors_not_panics() {
        for bytes in [
            frame(7, b"x"),
            frame(1, b"abc")[..9].to_vec(),
            vec![1, 0, 0],
        ] {
            let mut sink = CaptureSink::default();
            let err = block_on(pump(&mut Cursor::new(bytes), &mut sink)).unwrap_err();
            assert!(matches!(err, Error::Container { .. }), "{err:?}");
        }
        let err = block_on(pump(
            &mut Cursor::new(frame(3, b"oci runtime error")),
            &mut CaptureSink::default(),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("oci runtime error"));
    }
}
