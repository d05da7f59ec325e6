//! Who holds a lock: the journal and the certificate folder lock files (std's `File::lock`)
//! so that parallel launches never overwrite each other, and name the holder in the error.

use std::fs::File;

/// The process holding a flock on `file`, from `/proc/locks` (Linux; `None` elsewhere or when
/// it cannot be told). A process in another PID namespace shows as its pid there, if at all.
pub fn holder(file: &File) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let inode = file.metadata().ok()?.ino();
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        locks.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // "1: FLOCK ADVISORY WRITE 1234 08:01:5678 0 EOF"; waiters have "->" after "1:".
            if fields.get(1) != Some(&"FLOCK") {
                return None;
            }
            let file_inode = fields.get(5)?.rsplit(':').next()?.parse::<u64>().ok()?;
            (file_inode == inode)
                .then(|| fields.get(4)?.parse().ok())
                .flatten()
        })
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}
