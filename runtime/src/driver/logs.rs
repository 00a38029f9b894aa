//! Task output into rotated files, as Nomad keeps them: `<task>.stdout.0`, `.1`, ...
//! Past `file_size_max_bytes` the writer moves to the next index; only the newest
//! `files_max` files are kept (the `logs` block's `max_files` and `max_file_size`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Rotation limits for one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub files_max: u32,
    pub file_size_max_bytes: u64,
}

/// Writes one stream (`<dir>/<task>.<stream>.<n>`), rotating by size.
pub struct RotatingWriter {
    dir: PathBuf,
    base: String,
    rotation: Rotation,
    index: u32,
    file: File,
    written_bytes: u64,
}

impl RotatingWriter {
    /// Continues after the newest existing file of this stream, or starts at index 0.
    pub fn open(dir: &Path, base: &str, rotation: Rotation) -> io::Result<RotatingWriter> {
        let index = existing_indexes(dir, base)?.last().copied().unwrap_or(0);
        let path = dir.join(format!("{base}.{index}"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let written_bytes = file.metadata()?.len();
        Ok(RotatingWriter {
            dir: dir.to_owned(),
            base: base.to_owned(),
            rotation,
            index,
            file,
            written_bytes,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.index += 1;
        let path = self.dir.join(format!("{}.{}", self.base, self.index));
        self.file = OpenOptions::new().create(true).append(true).open(path)?;
        self.written_bytes = 0;
        let keep_from = (self.index + 1).saturating_sub(self.rotation.files_max.max(1));
        for old in existing_indexes(&self.dir, &self.base)? {
            if old < keep_from {
                fs::remove_file(self.dir.join(format!("{}.{old}", self.base)))?;
            }
        }
        Ok(())
    }

    /// Copies `source` to the files until it ends (the task closed its end of the pipe).
    pub fn copy_from(&mut self, mut source: impl Read) -> io::Result<()> {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            let read = match source.read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            self.write_all(&buffer[..read])?;
        }
    }
}

impl Write for RotatingWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.written_bytes >= self.rotation.file_size_max_bytes {
            self.rotate()?;
        }
        let room = self.rotation.file_size_max_bytes.saturating_sub(self.written_bytes).max(1);
        let chunk = &bytes[..bytes.len().min(room as usize)];
        let written = self.file.write(chunk)?;
        self.written_bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The indexes of `<base>.<n>` files in `dir`, ascending.
pub fn existing_indexes(dir: &Path, base: &str) -> io::Result<Vec<u32>> {
    let prefix = format!("{base}.");
    let mut indexes: Vec<u32> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_prefix(&prefix)?.parse().ok())
        .collect();
    indexes.sort_unstable();
    Ok(indexes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_newest_files_and_every_byte_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation { files_max: 3, file_size_max_bytes: 10 };
        let mut writer = RotatingWriter::open(dir.path(), "web.stdout", rotation).unwrap();
        let text: String = (0..100).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        writer.copy_from(text.as_bytes()).unwrap();
        assert_eq!(existing_indexes(dir.path(), "web.stdout").unwrap(), [7, 8, 9]);
        let kept: String = [7, 8, 9]
            .iter()
            .map(|i| fs::read_to_string(dir.path().join(format!("web.stdout.{i}"))).unwrap())
            .collect();
        assert_eq!(kept, text[70..]);
        let reopened = RotatingWriter::open(dir.path(), "web.stdout", rotation).unwrap();
        assert_eq!((reopened.index, reopened.written_bytes), (9, 10));
    }
}
