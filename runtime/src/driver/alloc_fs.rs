//! An allocation's directory as the API reads it (`alloc fs`): listings, file facts and
//! readers, every path confined to the directory.
//!
//! A path is taken relative to the allocation's directory, as Nomad takes it: `/` and
//! the empty path are the directory itself, a leading `/` changes nothing. It escapes when
//! its `..` climb above the directory, or when what it names, once every symlink is
//! followed, lies outside. The second check is made on what was actually opened (the
//! kernel's own name for the open descriptor, `/proc/self/fd/N`), so a link swapped in
//! between a check and an open cannot lead outside. Everything is then read through that
//! descriptor. A task's `secrets` directory may be listed but not read, as in Nomad.

use drover_core::model::{AllocFileInfo, Timestamp};
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// How many first bytes of a file its content type is judged by (Go's sniffing length).
const SNIFF_LEN_BYTES: usize = 512;
/// Nomad's words for a path that leads outside the allocation's directory.
pub const ESCAPES: &str = "Path escapes the alloc directory";

/// Why a path could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum FsError {
    /// The path leads outside the allocation's directory.
    Escapes,
    /// The path is inside a task's `secrets` directory and was to be read.
    Secret(String),
    /// The listing's JSON would be longer than its bound, in bytes.
    TooLong { path: String, json_len_max_bytes: usize },
    /// The file system's own refusal, naming the path as given.
    Io(String),
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsError::Escapes => f.write_str(ESCAPES),
            FsError::Secret(path) => write!(f, "Reading secret file prohibited: {path}"),
            FsError::TooLong { path, json_len_max_bytes } => write!(
                f,
                "directory {path:?} holds more entries than one listing answers \
                 ({json_len_max_bytes} bytes of JSON); list its subdirectories"
            ),
            FsError::Io(message) => f.write_str(message),
        }
    }
}

/// One allocation's directory, by its canonical path.
#[derive(Debug)]
pub struct AllocFs {
    root: PathBuf,
}

impl AllocFs {
    /// The directory at `root`; it must exist.
    pub fn new(root: &Path) -> Result<AllocFs, FsError> {
        let root = root.canonicalize().map_err(|e| io_error("open", "/", &e))?;
        Ok(AllocFs { root })
    }

    /// The entries of the directory at `path`, by name, links not followed; refused once
    /// the listing as compact JSON would be longer than `json_len_max_bytes`, which bounds
    /// both what is held while reading and the answer.
    pub fn list(
        &self,
        path: &str,
        json_len_max_bytes: usize,
    ) -> Result<Vec<AllocFileInfo>, FsError> {
        let (dir, _) = self.open(path)?;
        let fd_path = fd_path(&dir);
        let entries = std::fs::read_dir(&fd_path).map_err(|e| io_error("open", path, &e))?;
        let mut files = Vec::new();
        // The opening bracket, then each entry with the comma or bracket after it.
        let mut json_len_bytes = 1;
        for entry in entries {
            let entry = entry.map_err(|e| io_error("readdirent", path, &e))?;
            let metadata = entry.metadata().map_err(|e| io_error("lstat", path, &e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let info = file_info(name, &metadata);
            let encoded = serde_json::to_vec(&info).map_err(|e| FsError::Io(e.to_string()))?;
            json_len_bytes += encoded.len() + 1;
            if json_len_bytes > json_len_max_bytes {
                return Err(FsError::TooLong { path: path.to_owned(), json_len_max_bytes });
            }
            files.push(info);
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    /// The file or directory at `path`, links followed, with its sniffed content type.
    pub fn stat(&self, path: &str) -> Result<AllocFileInfo, FsError> {
        let (mut file, relative) = self.open(path)?;
        let metadata = file.metadata().map_err(|e| io_error("stat", path, &e))?;
        let name = match relative.file_name() {
            Some(name) => name.to_string_lossy().into_owned(),
            None => self.root.file_name().unwrap_or_default().to_string_lossy().into_owned(),
        };
        let mut info = file_info(name, &metadata);
        // A secret is never read, not even its first bytes.
        info.content_type = if metadata.is_file() && !is_secret(&relative) {
            let mut head = Vec::with_capacity(SNIFF_LEN_BYTES);
            let read = (&mut file).take(SNIFF_LEN_BYTES as u64).read_to_end(&mut head);
            read.map_or("application/octet-stream", |_| content_type(&head)).to_owned()
        } else {
            "application/octet-stream".to_owned()
        };
        if path.ends_with(".json") {
            info.content_type = "application/json".to_owned();
        }
        Ok(info)
    }

    /// The file at `path`, positioned `offset_bytes` from its start; a directory or a
    /// secret is refused.
    pub fn read_at(&self, path: &str, offset_bytes: u64) -> Result<File, FsError> {
        let (mut file, relative) = self.open(path)?;
        if is_secret(&relative) {
            return Err(FsError::Secret(path.to_owned()));
        }
        let metadata = file.metadata().map_err(|e| io_error("stat", path, &e))?;
        if metadata.is_dir() {
            return Err(FsError::Io(format!("file {path:?} is a directory")));
        }
        file.seek(SeekFrom::Start(offset_bytes)).map_err(|e| io_error("seek", path, &e))?;
        Ok(file)
    }

    /// The file at `path`, positioned `back_bytes` before its end (at its start when it is
    /// shorter); a directory or a secret is refused.
    pub fn read_from_end(&self, path: &str, back_bytes: u64) -> Result<File, FsError> {
        let mut file = self.read_at(path, 0)?;
        let len_bytes = file.metadata().map_err(|e| io_error("stat", path, &e))?.len();
        let start = len_bytes.saturating_sub(back_bytes);
        file.seek(SeekFrom::Start(start)).map_err(|e| io_error("seek", path, &e))?;
        Ok(file)
    }

    /// Opens `path` and checks where it led: the file, and its place relative to the
    /// root. It is first opened as a mere reference (`O_PATH`, which opens no device and
    /// reads nothing), checked to lie inside the root and to be a regular file or a
    /// directory, and only then opened for reading through that same reference, without
    /// blocking (a named pipe would) — so a link to a device outside (a watchdog, a tape)
    /// is refused before anything could act on it.
    fn open(&self, path: &str) -> Result<(File, PathBuf), FsError> {
        let lexical = confine(path)?;
        let reference = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::PATH.bits() as i32)
            .open(self.root.join(&lexical))
            .map_err(|e| io_error("open", path, &e))?;
        let opened =
            std::fs::read_link(fd_path(&reference)).map_err(|e| io_error("open", path, &e))?;
        let relative = opened.strip_prefix(&self.root).map_err(|_| FsError::Escapes)?;
        let kind = reference.metadata().map_err(|e| io_error("stat", path, &e))?.file_type();
        if !kind.is_file() && !kind.is_dir() {
            return Err(FsError::Io(format!("{path:?} is not a regular file or directory")));
        }
        let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(fd_path(&reference))
            .map_err(|e| io_error("open", path, &e))?;
        Ok((file, relative.to_owned()))
    }
}

/// `path` as a relative path that stays inside the directory by its names alone: `.` and
/// empty parts dropped, each `..` taking back the part before it.
fn confine(path: &str) -> Result<PathBuf, FsError> {
    if path.contains('\0') {
        return Err(FsError::Io(format!("invalid path {path:?}")));
    }
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop().ok_or(FsError::Escapes)?;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(parts.iter().collect())
}

/// Whether a path relative to the root lies in a task's `secrets` directory
/// (`<task>/secrets/...`; the shared `alloc` directory has none).
fn is_secret(relative: &Path) -> bool {
    let mut parts = relative.components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(task)), Some(Component::Normal(dir))) => {
            task != "alloc" && dir == "secrets"
        }
        _ => false,
    }
}

/// The kernel's name for an open descriptor, which also opens what it names.
fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// An I/O error as Go words a failed call on a path: `open local/x: no such file or
/// directory`, naming the path as the caller gave it, never where it lies on the host.
fn io_error(call: &str, path: &str, error: &io::Error) -> FsError {
    let reason = match error.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::NotADirectory => "not a directory".to_owned(),
        _ => error.to_string(),
    };
    FsError::Io(format!("{call} {path}: {reason}"))
}

fn file_info(name: String, metadata: &Metadata) -> AllocFileInfo {
    let mod_time_ns = metadata.mtime().saturating_mul(1_000_000_000) + metadata.mtime_nsec();
    AllocFileInfo {
        name,
        is_dir: metadata.is_dir(),
        size: metadata.len(),
        file_mode: file_mode(metadata.mode()),
        mod_time: Timestamp(mod_time_ns),
        content_type: String::new(),
    }
}

/// A Unix `st_mode` as Go's `os.FileMode.String()` writes it: the type and special bits as
/// letters (in Go's order `dalTLDpSugct?`, or `-` for none), then `rwxrwxrwx`.
pub fn file_mode(mode: u32) -> String {
    const TYPE_MASK: u32 = 0o170_000;
    let kind = mode & TYPE_MASK;
    let letters = [
        ('d', kind == 0o040_000),
        ('L', kind == 0o120_000),
        ('D', kind == 0o060_000 || kind == 0o020_000),
        ('p', kind == 0o010_000),
        ('S', kind == 0o140_000),
        ('u', mode & 0o4000 != 0),
        ('g', mode & 0o2000 != 0),
        ('c', kind == 0o020_000),
        ('t', mode & 0o1000 != 0),
    ];
    let mut text: String = letters.iter().filter(|(_, set)| *set).map(|(c, _)| *c).collect();
    if text.is_empty() {
        text.push('-');
    }
    for (bit, letter) in (0..9).rev().zip("rwxrwxrwx".chars()) {
        text.push(if mode & (1 << bit) != 0 { letter } else { '-' });
    }
    text
}

/// The content type of a file from its first bytes, by the WHATWG sniffing rules Go's
/// `http.DetectContentType` follows (its common signatures).
pub fn content_type(head: &[u8]) -> &'static str {
    let head = &head[..head.len().min(SNIFF_LEN_BYTES)];
    let text_start = head.iter().position(|b| !b"\t\n\x0c\r ".contains(b)).unwrap_or(head.len());
    if let Some(kind) = markup_type(&head[text_start..]) {
        return kind;
    }
    if let Some((_, kind)) = EXACT_SIGNATURES.iter().find(|(sig, _)| head.starts_with(sig)) {
        return kind;
    }
    let riff = |form: &[u8]| head.starts_with(b"RIFF") && head.get(8..8 + form.len()) == Some(form);
    if let Some((_, kind)) = RIFF_FORMS.iter().find(|(form, _)| riff(form)) {
        return kind;
    }
    let binary = |b: &u8| matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1a | 0x1c..=0x1f);
    if head.iter().any(binary) { "application/octet-stream" } else { "text/plain; charset=utf-8" }
}

/// HTML by its first tag, or XML by its declaration, matched without regard to case.
fn markup_type(text: &[u8]) -> Option<&'static str> {
    const HTML_TAGS: [&[u8]; 17] = [
        b"<!DOCTYPE HTML",
        b"<HTML",
        b"<HEAD",
        b"<SCRIPT",
        b"<IFRAME",
        b"<H1",
        b"<DIV",
        b"<FONT",
        b"<TABLE",
        b"<A",
        b"<STYLE",
        b"<TITLE",
        b"<B",
        b"<BODY",
        b"<BR",
        b"<P",
        b"<!--",
    ];
    let starts = |tag: &[u8]| text.len() > tag.len() && text[..tag.len()].eq_ignore_ascii_case(tag);
    let html = HTML_TAGS.iter().any(|tag| starts(tag) && matches!(text[tag.len()], b' ' | b'>'));
    if html {
        return Some("text/html; charset=utf-8");
    }
    text.starts_with(b"<?xml").then_some("text/xml; charset=utf-8")
}

const EXACT_SIGNATURES: [(&[u8], &str); 22] = [
    (b"%PDF-", "application/pdf"),
    (b"%!PS-Adobe-", "application/postscript"),
    (b"\xFE\xFF", "text/plain; charset=utf-16be"),
    (b"\xFF\xFE", "text/plain; charset=utf-16le"),
    (b"\xEF\xBB\xBF", "text/plain; charset=utf-8"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
    (b"\x00\x00\x02\x00", "image/x-icon"),
    (b"BM", "image/bmp"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\x89PNG\x0D\x0A\x1A\x0A", "image/png"),
    (b"\xFF\xD8\xFF", "image/jpeg"),
    (b"ID3", "audio/mpeg"),
    (b"OggS\x00", "application/ogg"),
    (b"MThd\x00\x00\x00\x06", "audio/midi"),
    (b"\x1A\x45\xDF\xA3", "video/webm"),
    (b"wOFF", "font/woff"),
    (b"wOF2", "font/woff2"),
    (b"\x1F\x8B\x08", "application/x-gzip"),
    (b"PK\x03\x04", "application/zip"),
    (b"Rar!\x1A\x07\x00", "application/x-rar-compressed"),
    (b"\x00asm", "application/wasm"),
];

/// RIFF containers by the form named at byte 8.
const RIFF_FORMS: [(&[u8], &str); 3] =
    [(b"WEBPVP", "image/webp"), (b"AVI ", "video/avi"), (b"WAVE", "audio/wave")];

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A listing bound no test directory reaches.
    const UNBOUNDED: usize = usize::MAX;

    /// An allocation directory holding a task file, a secret, and links in and out.
    fn alloc_dir() -> (tempfile::TempDir, AllocFs) {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("alloc-1");
        for dir in ["alloc/logs", "web/local", "web/secrets"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("web/local/out.txt"), "hello\n").unwrap();
        std::fs::write(root.join("web/secrets/token"), "s3cret").unwrap();
        std::fs::write(scratch.path().join("outside.txt"), "host file").unwrap();
        symlink(root.join("web/local/out.txt"), root.join("alloc/inside-link")).unwrap();
        symlink(scratch.path().join("outside.txt"), root.join("alloc/escape-link")).unwrap();
        symlink(scratch.path(), root.join("web/local/escape-dir")).unwrap();
        symlink("../../..", root.join("web/local/up")).unwrap();
        let fs = AllocFs::new(&root).unwrap();
        (scratch, fs)
    }

    /// What reading `path` whole gives: its text or the error.
    fn check(fs: &AllocFs, path: &str) -> String {
        match fs.read_at(path, 0) {
            Ok(mut file) => {
                let mut text = String::new();
                file.read_to_string(&mut text).unwrap();
                text
            }
            Err(error) => format!("error: {error}"),
        }
    }

    #[test]
    fn paths_are_confined_to_the_allocation_directory() {
        let (_scratch, fs) = alloc_dir();
        assert_eq!(check(&fs, "web/local/out.txt"), "hello\n");
        assert_eq!(check(&fs, "/web/local/out.txt"), "hello\n", "a leading / is the root");
        assert_eq!(check(&fs, "web/local/../local/./out.txt"), "hello\n");
        assert_eq!(check(&fs, "alloc/inside-link"), "hello\n", "a link inside is followed");
        let escapes = format!("error: {ESCAPES}");
        for path in [
            "..",
            "../alloc-1/web/local/out.txt",
            "web/../../outside.txt",
            "alloc/escape-link",
            "web/local/escape-dir/outside.txt",
            "web/local/up",
            "web/local/up/outside.txt",
        ] {
            assert_eq!(check(&fs, path), escapes, "{path}");
        }
        assert_eq!(fs.list("web/local/escape-dir", UNBOUNDED), Err(FsError::Escapes));
        assert_eq!(fs.stat("alloc/escape-link"), Err(FsError::Escapes));
        // Absolute paths name places inside the directory, never the host's.
        assert_eq!(check(&fs, "/etc/passwd"), "error: open /etc/passwd: no such file or directory");
    }

    /// Only regular files and directories are opened for reading: a named pipe would
    /// block the agent, a device could act on being opened (a link to one outside is an
    /// escape, refused before it is opened for reading).
    #[test]
    fn only_files_and_directories_are_read() {
        let (scratch, fs) = alloc_dir();
        let root = scratch.path().join("alloc-1");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("web/local/pipe"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let refused = "error: \"web/local/pipe\" is not a regular file or directory";
        assert_eq!(check(&fs, "web/local/pipe"), refused);
        assert!(fs.stat("web/local/pipe").is_err());
        symlink("/dev/null", root.join("web/local/device")).unwrap();
        assert_eq!(check(&fs, "web/local/device"), format!("error: {ESCAPES}"));
    }

    #[test]
    fn secrets_are_listed_but_never_read() {
        let (_scratch, fs) = alloc_dir();
        let names: Vec<String> =
            fs.list("web/secrets", UNBOUNDED).unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["token"]);
        let refused = "error: Reading secret file prohibited: web/secrets/token";
        assert_eq!(check(&fs, "web/secrets/token"), refused);
        assert_eq!(
            check(&fs, "web/local/../secrets/token"),
            refused.replace("web/secrets/token", "web/local/../secrets/token",)
        );
    }

    #[test]
    fn listings_and_stats_describe_entries_as_nomad_does() {
        let (_scratch, fs) = alloc_dir();
        let listed: Vec<(String, bool, String)> = fs
            .list("/", UNBOUNDED)
            .unwrap()
            .into_iter()
            .map(|f| (f.name, f.is_dir, f.file_mode.chars().take(1).collect()))
            .collect();
        let dir = |name: &str| (name.to_owned(), true, "d".to_owned());
        assert_eq!(listed, [dir("alloc"), dir("web")]);
        let links: Vec<String> = fs
            .list("alloc", UNBOUNDED)
            .unwrap()
            .into_iter()
            .map(|f| f.file_mode[..1].to_owned())
            .collect();
        assert_eq!(links, ["L", "L", "d"], "links are listed as links, not followed");

        let stat = fs.stat("web/local/out.txt").unwrap();
        assert_eq!((stat.name.as_str(), stat.is_dir, stat.size), ("out.txt", false, 6));
        assert_eq!(stat.content_type, "text/plain; charset=utf-8");
        assert!(stat.mod_time.0 > 0);
        assert_eq!(fs.stat("/").unwrap().name, "alloc-1");
        assert_eq!(
            fs.stat("web/missing").unwrap_err().to_string(),
            "open web/missing: no such file or directory"
        );
        assert_eq!(check(&fs, "web"), "error: file \"web\" is a directory");
    }

    #[test]
    fn a_listing_is_bounded_by_the_length_of_its_json() {
        let scratch = tempfile::tempdir().unwrap();
        for index in 0..50 {
            std::fs::write(scratch.path().join(format!("file-{index:02}")), "x").unwrap();
        }
        let fs = AllocFs::new(scratch.path()).unwrap();
        let whole = fs.list("/", UNBOUNDED).unwrap();
        let json_len_bytes = serde_json::to_vec(&whole).unwrap().len();
        assert_eq!(fs.list("/", json_len_bytes).unwrap(), whole, "exactly the bound is answered");
        assert_eq!(
            fs.list("/", json_len_bytes - 1).unwrap_err().to_string(),
            format!(
                "directory \"/\" holds more entries than one listing answers ({} bytes of \
                 JSON); list its subdirectories",
                json_len_bytes - 1
            )
        );
    }

    #[test]
    fn reads_start_at_the_offset() {
        let (_scratch, fs) = alloc_dir();
        let mut text = String::new();
        fs.read_at("web/local/out.txt", 2).unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "llo\n");
        let from_end = |back_bytes| {
            let mut text = String::new();
            let file = fs.read_from_end("web/local/out.txt", back_bytes);
            file.unwrap().read_to_string(&mut text).unwrap();
            text
        };
        assert_eq!(from_end(2), "o\n");
        assert_eq!(from_end(100), "hello\n", "a file shorter than asked is read whole");
        let refused = "Reading secret file prohibited: web/secrets/token";
        assert_eq!(fs.read_from_end("web/secrets/token", 1).unwrap_err().to_string(), refused);
    }

    #[test]
    fn modes_read_as_go_writes_them() {
        assert_eq!(file_mode(0o100_644), "-rw-r--r--");
        assert_eq!(file_mode(0o040_755), "drwxr-xr-x");
        assert_eq!(file_mode(0o041_777), "dtrwxrwxrwx");
        assert_eq!(file_mode(0o120_777), "Lrwxrwxrwx");
        assert_eq!(file_mode(0o020_666), "Dcrw-rw-rw-");
        assert_eq!(file_mode(0o010_600), "prw-------");
        assert_eq!(file_mode(0o104_755), "urwxr-xr-x");
    }

    #[test]
    fn content_types_are_sniffed_from_the_first_bytes() {
        assert_eq!(content_type(b"hello\n"), "text/plain; charset=utf-8");
        assert_eq!(content_type(b""), "text/plain; charset=utf-8");
        assert_eq!(content_type(b"\x00\x01binary"), "application/octet-stream");
        assert_eq!(content_type(b"  <html><body>"), "text/html; charset=utf-8");
        assert_eq!(content_type(b"<!-- x -->"), "text/html; charset=utf-8");
        assert_eq!(content_type(b"<article>"), "text/plain; charset=utf-8");
        assert_eq!(content_type(b"<?xml version=\"1.0\"?>"), "text/xml; charset=utf-8");
        assert_eq!(content_type(b"\x89PNG\r\n\x1a\nrest"), "image/png");
        assert_eq!(content_type(b"\x1f\x8b\x08\x00"), "application/x-gzip");
        assert_eq!(content_type(b"RIFF\x00\x00\x00\x00WAVEfmt "), "audio/wave");
        assert_eq!(content_type(b"%PDF-1.7"), "application/pdf");
    }
}
