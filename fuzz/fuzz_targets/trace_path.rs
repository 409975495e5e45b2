//! PushTrace path handling: fuzzed file names through `validate_file_name`, then fuzzed chunks (name, offset,
//! bytes) through the real TraceStore/TraceWriter into a fresh trace folder.
//!
//! Input, as text (readable seeds): the whole input is checked as one name, then each line as a name or, when it
//! reads `<name>@<offset>:<data>`, as a chunk whose name is checked and, if valid, written.
//!
//! A name that passes must stay a short relative path inside the task folder. Writes are checked against a model of
//! the folder: a refused chunk changes nothing, an accepted one appends exactly its new bytes, limits hold, and no
//! file appears anywhere but where the names say.
#![no_main]

use std::{
    collections::BTreeMap,
    path::{Component, Path},
    sync::OnceLock,
};

use control_tower::{
    error::Error,
    trace::{MAX_DEPTH, TraceLimits, TraceStore, validate_file_name},
};
use libfuzzer_sys::fuzz_target;

const TASK_ID: &str = "0197a0c0-0000-7000-8000-000000000001";
/// Small, so that fuzzed uploads reach them.
const LIMITS: TraceLimits = TraceLimits { max_file_bytes: 512, max_task_bytes: 1024, max_files: 6 };

/// One line of input: a name alone, or `<name>@<offset>:<data>` (`!` instead of `:` marks the last chunk).
struct Chunk<'a> {
    name: &'a str,
    offset: u64,
    data: &'a [u8],
    eof: bool,
}

fn chunk_of(line: &str) -> Option<Chunk<'_>> {
    let (name, rest) = line.split_once('@')?;
    let at = rest.find([':', '!'])?;
    let offset = rest[..at].parse().ok()?;
    Some(Chunk { name, offset, data: &rest.as_bytes()[at + 1..], eof: rest.as_bytes()[at] == b'!' })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"))
}

/// What a valid name promises.
fn assert_contained(name: &str) {
    let path = validate_file_name(name).expect("checked by the caller");
    assert!(path.is_relative(), "{name:?}");
    assert!(name.len() <= 255, "{name:?}");
    let components: Vec<_> = path.components().collect();
    assert!(!components.is_empty() && components.len() <= MAX_DEPTH, "{name:?}");
    for c in &components {
        let Component::Normal(part) = c else { panic!("{name:?} has a {c:?} component") };
        let part = part.to_str().expect("UTF-8");
        assert!(!part.starts_with('.') && part.chars().count() <= 128, "{name:?}");
        assert!(part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')), "{name:?}");
    }
    // The same components in the same order: nothing dropped or reinterpreted.
    assert_eq!(path.to_str(), Some(name));
    let task_dir = Path::new("/srv/traces").join(TASK_ID);
    let joined = task_dir.join(&path);
    assert!(joined.starts_with(&task_dir) && joined != task_dir, "{name:?} leaves the task folder");
    assert!(joined.components().all(|c| !matches!(c, Component::ParentDir | Component::CurDir)), "{name:?}");
    let first = components[0].as_os_str();
    assert!(first != "input.json" && first != "output.json" && first != "attempts", "{name:?} is reserved");
}

/// The trace folder as it should be: each uploaded file's bytes.
#[derive(Default)]
struct Model {
    files: BTreeMap<String, Vec<u8>>,
}

impl Model {
    fn total(&self) -> u64 {
        self.files.values().map(|f| f.len() as u64).sum()
    }

    /// The answer the writer must give, and the file's content after an accepted chunk.
    fn expect(&self, name: &str, offset: u64, data: &[u8]) -> Result<Option<Vec<u8>>, &'static str> {
        let is_dir = self.files.keys().any(|f| f.starts_with(name) && f.as_bytes().get(name.len()) == Some(&b'/'));
        let under_file =
            self.files.keys().any(|f| name.starts_with(f.as_str()) && name.as_bytes().get(f.len()) == Some(&b'/'));
        if is_dir || under_file {
            return Err("file");
        }
        let existing = self.files.get(name);
        let len = existing.map_or(0, |f| f.len() as u64);
        if offset > len {
            return Err("offset");
        }
        let end = offset + data.len() as u64;
        if end <= len && existing.is_some() {
            return Ok(None);
        }
        let fresh = end.saturating_sub(len);
        if end > LIMITS.max_file_bytes
            || self.total() + fresh > LIMITS.max_task_bytes
            || (existing.is_none() && self.files.len() as u64 >= LIMITS.max_files)
        {
            return Err("limit");
        }
        let mut content = existing.cloned().unwrap_or_default();
        content.extend_from_slice(&data[(len - offset) as usize..]);
        Ok(Some(content))
    }
}

/// Every regular file below `dir`, relative to `root`; anything that is neither a file nor a folder fails.
fn files_below(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let kind = entry.file_type().expect("file type");
        let path = entry.path();
        if kind.is_dir() {
            files_below(root, &path, out);
        } else {
            assert!(kind.is_file(), "{path:?} is neither a file nor a folder");
            let name = path.strip_prefix(root).expect("below root").to_str().expect("UTF-8").to_owned();
            out.insert(name, std::fs::read(&path).expect("read"));
        }
    }
}

fn run_uploads(chunks: &[Chunk]) {
    // tmpfs where there is one: the writer fsyncs, and disk syncs would dominate the run.
    let shm = Path::new("/dev/shm");
    let scratch = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("tempdir");
    let root = scratch.path().join("traces");
    let store = TraceStore::open(&root, LIMITS).expect("trace store");
    let task_dir = store.task_dir(TASK_ID);
    let mut model = Model::default();
    let mut writer = store.writer();
    for chunk in chunks {
        let (name, offset) = (chunk.name, chunk.offset);
        let expected = model.expect(name, offset, chunk.data);
        let result = runtime().block_on(writer.write(TASK_ID, 1, name, offset, chunk.data.to_vec(), chunk.eof));
        match (result, expected) {
            (Ok(()), Ok(content)) => {
                if let Some(content) = content {
                    model.files.insert(name.to_owned(), content);
                }
            }
            (Err(Error::InvalidArgument(v)), Err(field)) if v[0].field == field => {}
            (Err(Error::ResourceExhausted(_)), Err("limit")) => {}
            (got, want) => panic!("chunk of {name:?} at {offset}: got {got:?}, the model says {want:?}"),
        }
        let mut on_disk = BTreeMap::new();
        if task_dir.exists() {
            files_below(&task_dir, &task_dir, &mut on_disk);
        }
        assert_eq!(on_disk, model.files, "the trace folder differs from the model");
    }
    let summary = runtime().block_on(writer.finish()).expect("finish");
    for (name, size) in &summary.files {
        assert_eq!(model.files.get(name).map(|f| f.len() as u64), Some(*size), "{name}");
    }
    // Nothing escaped the task folder.
    let outside: Vec<_> =
        std::fs::read_dir(scratch.path()).expect("read_dir").map(|e| e.expect("entry").path()).collect();
    assert_eq!(outside, std::slice::from_ref(&root));
    let beside: Vec<_> = std::fs::read_dir(&root).expect("read_dir").map(|e| e.expect("entry").file_name()).collect();
    assert!(beside.is_empty() || beside == [TASK_ID], "{beside:?}");
}

/// Whether a name passes, checking what passing promises.
fn accepted(name: &str) -> bool {
    match validate_file_name(name) {
        Ok(_) => {
            assert_contained(name);
            true
        }
        Err(Error::InvalidArgument(v)) => {
            assert_eq!(v[0].field, "file");
            false
        }
        Err(other) => panic!("{name:?}: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    accepted(&text);
    let mut chunks = Vec::new();
    for line in text.split('\n') {
        match chunk_of(line) {
            Some(chunk) if accepted(chunk.name) => chunks.push(chunk),
            Some(_) => {}
            None => {
                accepted(line);
            }
        }
    }
    if !chunks.is_empty() {
        run_uploads(&chunks);
    }
});
