//! Between collections the daemon sleeps for hours. What it holds then is mostly the pages of
//! its own binary that the last collection touched: clean, file-backed, and mapped again from
//! the page cache when next touched. Unmapping them keeps an idle daemon's resident memory to
//! its own data.
//!
//! Unmapping (`MADV_DONTNEED`), not paging out (`MADV_PAGEOUT`): the kernel pages out a file's
//! pages only for a process that owns the file or may write it, which the daemon in its image
//! does not, and evicted pages come back from disk on the next touch, charged to the daemon's
//! cgroup as recently used memory. Unmapped pages stay in the page cache, charged where they
//! were, and are the first the kernel reclaims when memory runs short.

/// Unmaps this executable's read-only mappings that hold no private pages; returns the bytes
/// advised. Their contents are the file's: a page is mapped again from the page cache when next
/// touched. Best effort: elsewhere than Linux nothing happens.
#[cfg(target_os = "linux")]
pub fn release_code_pages() -> usize {
    let (Ok(smaps), Ok(exe)) = (
        std::fs::read_to_string("/proc/self/smaps"),
        std::fs::read_link("/proc/self/exe"),
    ) else {
        return 0;
    };
    let mut advised = 0;
    for (start, len) in clean_read_only_mappings(&smaps, &exe.to_string_lossy()) {
        // SAFETY: a read-only mapping of our own executable with no private (modified) pages,
        // as /proc/self/smaps reports it; nothing can write to it, so dropping its page-table
        // entries loses nothing: the next access maps the same file contents again.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if rc == 0 {
            advised += len;
        }
    }
    advised
}

#[cfg(not(target_os = "linux"))]
pub fn release_code_pages() -> usize {
    0
}

/// This process's resident file-backed memory (`RssFile`) in KiB, where the system reports it:
/// what releasing the code pages lowers.
pub fn resident_file_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssFile:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `(start, length)` of each mapping of `exe` in `smaps` (the text of `/proc/self/smaps`) that is
/// not writable and holds no anonymous pages. The data the loader relocated and then made
/// read-only (RELRO) holds private copies: unmapping those would undo the relocations.
fn clean_read_only_mappings(smaps: &str, exe: &str) -> Vec<(usize, usize)> {
    let mut clean = Vec::new();
    let mut candidate = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if !first.ends_with(':') {
            // A mapping's first line; its "Key: value" lines follow.
            candidate = read_only_mapping_of(line, exe);
        } else if first == "Anonymous:" {
            // Chosen only on a positive "no private pages".
            if fields.next() == Some("0") {
                clean.extend(candidate);
            }
            candidate = None;
        }
    }
    clean
}

/// `(start, length)` of a mapping line (as in `/proc/self/maps`) when it maps `exe` without
/// write access.
fn read_only_mapping_of(line: &str, exe: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    let path = fields.nth(3)?;
    if path != exe || perms.contains('w') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    Some((start, end.checked_sub(start)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mapping as /proc/self/smaps shows it, with only the lines that matter here.
    fn mapping(header: &str, anonymous_kb: u64) -> String {
        format!(
            "{header}\nSize:               1024 kB\nRss:                 512 kB\nAnonymous:      {anonymous_kb} kB\nVmFlags: rd mr mw me\n"
        )
    }

    #[test]
    fn only_clean_read_only_mappings_of_the_executable_are_chosen() {
        let exe = "/usr/bin/hodometer";
        let smaps = [
            mapping(
                "55d0c0900000-55d0c0a00000 r--p 00000000 fd:01 1234 /usr/bin/hodometer",
                0,
            ),
            mapping(
                "55d0c0a00000-55d0c0b00000 r-xp 00100000 fd:01 1234 /usr/bin/hodometer",
                0,
            ),
            // RELRO: relocated by the loader, then made read-only.
            mapping(
                "55d0c0b00000-55d0c0b10000 r--p 00200000 fd:01 1234 /usr/bin/hodometer",
                64,
            ),
            mapping(
                "55d0c0b10000-55d0c0b20000 rw-p 00210000 fd:01 1234 /usr/bin/hodometer",
                0,
            ),
            mapping(
                "7f0000000000-7f0000100000 r-xp 00000000 fd:01 99 /usr/lib/libc.so.6",
                0,
            ),
            mapping(
                "55d0c1000000-55d0c1100000 rw-p 00000000 00:00 0 [heap]",
                1024,
            ),
        ]
        .concat();
        assert_eq!(
            clean_read_only_mappings(&smaps, exe),
            vec![(0x55d0_c090_0000, 0x10_0000), (0x55d0_c0a0_0000, 0x10_0000)]
        );
    }

    #[test]
    fn a_mapping_without_an_anonymous_line_is_left_alone() {
        let exe = "/usr/bin/hodometer";
        let smaps = "55d0c0a00000-55d0c0b00000 r-xp 00100000 fd:01 1234 /usr/bin/hodometer\n\
                     Rss:                 512 kB\n";
        assert_eq!(clean_read_only_mappings(smaps, exe), vec![]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_running_test_binary_gives_back_its_code_pages() {
        let before = resident_file_kib().expect("RssFile in /proc/self/status");
        assert!(
            release_code_pages() > 0,
            "the test binary has clean read-only mappings"
        );
        let after = resident_file_kib().expect("RssFile in /proc/self/status");
        assert!(
            after < before,
            "resident file pages did not drop: {before} kB -> {after} kB"
        );
    }
}
