//! TensorBoard event files: one more sink of a run folder, so that `tensorboard --logdir
//! results/` shows every run's training loss, learning rate, gradient norm, total rank and
//! parameter count, its evaluation metrics, and each adapted matrix's rank as it grows.
//!
//! The file is a sequence of TFRecords (a little-endian u64 length, the masked CRC-32C of those
//! 8 bytes, the payload, the masked CRC-32C of the payload), each payload one `Event` protobuf:
//! the first names the format (`file_version: "brain.Event:2"`), the others carry a `Summary` of
//! scalars. Only the fields written here are declared (tags as in TensorFlow's `event.proto` and
//! `summary.proto`). The file lives in the run folder and is one of the log files cut back to
//! their checkpoint lengths on resume, so a resumed run neither repeats nor loses points.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use prost::Message;

/// The event file's name in a run folder (TensorBoard reads files whose name holds `tfevents`).
pub const EVENT_FILE: &str = "events.out.tfevents.triadapt";

#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    /// A oneof in `summary.proto`: declared as one here so that 0.0 is written (a plain proto3
    /// float field would omit it, and the reader would see no scalar at all).
    #[prost(oneof = "Scalar", tags = "2")]
    value: Option<Scalar>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Scalar {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
}

/// TFRecord's checksum: CRC-32C, rotated right by 15 bits, plus a constant.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord around `payload`.
fn record(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc(payload).to_le_bytes());
    out
}

/// The event file of one run, appended to as the run goes.
pub struct EventFile {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
}

impl EventFile {
    /// Opens `run/EVENT_FILE`: a new file (starting with the format event) for a fresh run, the
    /// existing one for a resumed run (already cut back to its checkpoint length).
    pub fn open(run: &Path, resume: bool) -> Result<Self> {
        let path = run.join(EVENT_FILE);
        let existing = resume && path.is_file();
        let file = if existing { std::fs::OpenOptions::new().append(true).open(&path) } else { std::fs::File::create(&path) };
        let file = file.with_context(|| format!("cannot open {}", path.display()))?;
        let mut events = EventFile { path, out: std::io::BufWriter::new(file) };
        if !existing {
            events.write(0, What::FileVersion("brain.Event:2".into()))?;
        }
        Ok(events)
    }

    /// Scalars at `step` (TensorBoard's x axis), one event for all of them. Non-finite values
    /// are written as they are (TensorBoard shows NaN and infinities).
    pub fn scalars(&mut self, step: i64, values: &[(String, f64)]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let value = values.iter().map(|(tag, v)| SummaryValue { tag: tag.clone(), value: Some(Scalar::SimpleValue(*v as f32)) }).collect();
        self.write(step, What::Summary(Summary { value }))
    }

    /// Makes everything written so far reach the file (at log points and before checkpoints,
    /// whose recorded length must cover it).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn write(&mut self, step: i64, what: What) -> Result<()> {
        let wall_time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let payload = Event { wall_time, step, what: Some(what) }.encode_to_vec();
        self.out.write_all(&record(&payload)).with_context(|| format!("cannot write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_tfrecords() {
        // CRC-32C's check value (RFC 3720, B.4): "123456789" -> 0xE3069283.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        // Masked: rotate right 15, add 0xa282ead8 (TensorFlow's `crc32c.h` Mask).
        assert_eq!(masked_crc(b"123456789"), 0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8));
        let r = record(b"abc");
        assert_eq!(&r[..8], &3u64.to_le_bytes());
        assert_eq!(&r[12..15], b"abc");
        assert_eq!(r.len(), 8 + 4 + 3 + 4);
    }

    #[test]
    fn a_zero_scalar_is_still_written() {
        // Field 1 (tag, length-delimited "x"), field 2 (fixed32 0.0): the value's presence.
        let v = SummaryValue { tag: "x".into(), value: Some(Scalar::SimpleValue(0.0)) }.encode_to_vec();
        assert_eq!(v, [0x0a, 0x01, b'x', 0x15, 0, 0, 0, 0]);
    }
}
