//! Process-wide allocator settings that training needs from the C allocator libtorch uses.

/// glibc malloc settings for libtorch's CPU tensors: allocations below 256 MiB come from the heap
/// and up to 1 GiB of freed heap stays mapped. With glibc's defaults each training step returns
/// its multi-megabyte activations and gradients to the kernel and page-faults them in again
/// (`tutorial`: 6x the page faults, 1.5x the step time; see BENCHMARKS.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_TUNABLES: &str =
    "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824";

/// Applies [`MALLOC_TUNABLES`]; call it first thing in `main`. glibc reads its tunables once, at
/// process start, so the process replaces itself (exec, same pid and arguments) with a copy that
/// has them, unless `GLIBC_TUNABLES` is already set (by that copy or by the user).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn use_malloc_tunables() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let (Ok(exe), Some(arg0)) = (std::env::current_exe(), args.next()) else {
        return;
    };
    let e = std::process::Command::new(exe)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", MALLOC_TUNABLES)
        .exec();
    eprintln!(
        "warning: cannot restart with GLIBC_TUNABLES={MALLOC_TUNABLES} ({e}); training runs slower; \
         set that variable yourself to avoid this"
    );
}

/// Nothing to do outside glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn use_malloc_tunables() {}
