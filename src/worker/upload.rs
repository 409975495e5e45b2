//! Streams a task's log into `log.txt` through PushTrace while the handler runs.
//!
//! Lines are appended to an in-memory copy and sent as chunks at their byte offsets. If the upload stream breaks,
//! a new one resends from offset 0: the server skips the bytes it already has, so nothing is doubled. The final
//! chunk carries `eof`, and the server's answer means the whole log is on its disk.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::transient;
use crate::{pb, trace::LOG_FILE};

/// Largest chunk sent in one message (well under the 4 MiB gRPC default).
const MAX_CHUNK: usize = 1 << 20;
/// Log kept (and uploaded) per task; the server's default per-file limit is 64 MiB.
pub const MAX_LOG_BYTES: usize = 64 << 20;
const FINAL_ATTEMPTS: u32 = 5;

struct OpenUpload {
    chunks: mpsc::Sender<pb::TraceChunk>,
    call: tokio::task::JoinHandle<Result<pb::PushTraceResponse, Status>>,
}

fn start_upload(client: &super::Client) -> OpenUpload {
    let (chunks, rx) = mpsc::channel(16);
    let mut client = client.clone();
    let call = tokio::spawn(async move { client.push_trace(ReceiverStream::new(rx)).await.map(|r| r.into_inner()) });
    OpenUpload { chunks, call }
}

fn chunk(lease_id: &str, log: &[u8], from: usize, eof: bool) -> Vec<pb::TraceChunk> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let end = (offset + MAX_CHUNK).min(log.len());
        let last = end == log.len();
        out.push(pb::TraceChunk {
            lease_id: lease_id.to_owned(),
            file: LOG_FILE.to_owned(),
            offset: offset as u64,
            data: log[offset..end].to_vec(),
            eof: eof && last,
        });
        if last {
            return out;
        }
        offset = end;
    }
}

/// Uploads the log as it arrives on `lines` until the sender side closes, then makes sure all of it is stored.
/// The log starts with `header`; a handler that logs nothing gets no log and costs no upload. Returns the bytes
/// stored, or the reason the log could not be stored.
pub async fn upload_log(
    client: super::Client,
    lease_id: String,
    header: String,
    mut lines: mpsc::UnboundedReceiver<Vec<u8>>,
) -> Result<u64, Status> {
    let mut log: Vec<u8> = Vec::new();
    let mut truncated = false;
    let mut sent = 0usize;
    let mut upload = None;

    while let Some(first) = lines.recv().await {
        if log.is_empty() {
            log.extend_from_slice(header.as_bytes());
            log.push(b'\n');
        }
        append(&mut log, &mut truncated, first);
        // Take whatever else is already waiting, so that a chatty handler makes few large chunks.
        while let Ok(more) = lines.try_recv() {
            append(&mut log, &mut truncated, more);
        }
        if upload.is_none() {
            sent = 0;
        }
        let current = upload.get_or_insert_with(|| start_upload(&client));
        for c in chunk(&lease_id, &log, sent, false) {
            if current.chunks.send(c).await.is_err() {
                break;
            }
        }
        sent = log.len();
        if current.call.is_finished()
            && let Some(finished) = upload.take()
        {
            // The server ended the upload early: a refusal is final, a broken connection is retried from 0.
            if let Ok(Err(status)) = finished.call.await
                && !transient(&status)
            {
                return Err(status);
            }
        }
    }

    if log.is_empty() {
        return Ok(0);
    }
    // The handler is done: send the rest with eof and wait for the server to confirm.
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=FINAL_ATTEMPTS {
        let open = match upload.take() {
            Some(open) => open,
            None => {
                sent = 0;
                start_upload(&client)
            }
        };
        for c in chunk(&lease_id, &log, sent.min(log.len()), true) {
            if open.chunks.send(c).await.is_err() {
                break;
            }
        }
        drop(open.chunks);
        match open.call.await {
            Ok(Ok(summary)) => return Ok(summary.files.iter().map(|f| f.size_bytes).sum()),
            Ok(Err(status)) if !transient(&status) || attempt == FINAL_ATTEMPTS => {
                return Err(status);
            }
            Ok(Err(status)) => tracing::warn!(%status, attempt, "log upload failed; resending"),
            Err(join) => {
                tracing::warn!(error = %join, attempt, "log upload task failed; resending")
            }
        }
        sent = 0;
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    Err(Status::unavailable("the log upload did not complete"))
}

fn append(log: &mut Vec<u8>, truncated: &mut bool, bytes: Vec<u8>) {
    if *truncated {
        return;
    }
    if log.len() + bytes.len() > MAX_LOG_BYTES {
        *truncated = true;
        log.extend_from_slice(b"[control-tower] log truncated: over the worker's log size limit\n");
        return;
    }
    log.extend_from_slice(&bytes);
}
