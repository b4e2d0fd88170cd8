//! Between collections the daemon sleeps for hours. What it holds then is mostly the pages of
//! its own binary that the last collection touched (the one binary also carries the inspector,
//! simulator and receiver): clean, file-backed, and re-read cheaply on the next cycle. Handing
//! them back keeps an idle daemon's resident memory to its own data.

/// Asks the kernel to page out this executable's read-only mappings; returns the bytes advised.
/// Contents never change: a page is read back from the file when next touched. Best effort:
/// where the advice is unknown (kernels before 5.4, other systems) nothing happens.
#[cfg(target_os = "linux")]
pub fn release_code_pages() -> usize {
    let (Ok(maps), Ok(exe)) = (
        std::fs::read_to_string("/proc/self/maps"),
        std::fs::read_link("/proc/self/exe"),
    ) else {
        return 0;
    };
    let exe = exe.to_string_lossy();
    let mut advised = 0;
    for (start, len) in maps
        .lines()
        .filter_map(|line| read_only_mapping_of(line, &exe))
    {
        // SAFETY: advice about our own read-only, file-backed mapping, taken from
        // /proc/self/maps; MADV_PAGEOUT only drops pages the kernel can read back from the
        // file, so no memory the program relies on changes.
        let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
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
/// what the advice above should lower. The kernel may decline it (it pages out a file's pages
/// only for a process that owns the file or may write it), so the daemon logs both sides.
pub fn resident_file_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssFile:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `(start, length)` of a `/proc/self/maps` line when it maps `exe` without write access.
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

    #[test]
    fn only_read_only_mappings_of_the_executable_are_chosen() {
        let exe = "/usr/bin/hodometer";
        let code = "55d0c0a00000-55d0c0b00000 r-xp 00200000 fd:01 1234 /usr/bin/hodometer";
        let data = "55d0c0b00000-55d0c0b10000 rw-p 00300000 fd:01 1234 /usr/bin/hodometer";
        let libc = "7f0000000000-7f0000100000 r-xp 00000000 fd:01 99 /usr/lib/libc.so.6";
        let heap = "55d0c1000000-55d0c1100000 rw-p 00000000 00:00 0 [heap]";
        assert_eq!(
            read_only_mapping_of(code, exe),
            Some((0x55d0_c0a0_0000, 0x10_0000))
        );
        assert_eq!(read_only_mapping_of(data, exe), None);
        assert_eq!(read_only_mapping_of(libc, exe), None);
        assert_eq!(read_only_mapping_of(heap, exe), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_running_test_binary_gives_back_its_code_pages() {
        let before = resident_file_kib().expect("RssFile in /proc/self/status");
        assert!(
            release_code_pages() > 0,
            "the test binary has read-only mappings"
        );
        let after = resident_file_kib().expect("RssFile in /proc/self/status");
        // The kernel keeps pages another process also maps; cargo-nextest runs this binary's tests
        // as concurrent processes, so only `cargo test` (one process) can see the drop.
        if std::env::var_os("NEXTEST_RUN_ID").is_none() {
            assert!(
                after < before,
                "resident file pages did not drop: {before} kB -> {after} kB"
            );
        }
    }
}
