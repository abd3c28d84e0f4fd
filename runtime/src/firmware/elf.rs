//! Flash and static RAM of a firmware ELF.
use std::path::Path;

use object::{Object as _, ObjectSection as _, SectionFlags, SectionKind};
use serde::Serialize;

use super::{FirmwareError, Result};

/// Flash and static RAM of the ELF, from its allocated sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ElfMemory {
    /// Everything loaded into flash: vector table, code, read-only data (incl. the model) and
    /// the initial values of `.data`.
    pub flash_bytes: u64,
    /// `flash_bytes` minus the model blob.
    pub code_bytes: u64,
    /// `.data` + `.bss` + `.uninit`: static RAM, without the stack.
    pub ram_bytes: u64,
}

/// Flash and static RAM of `elf` from its allocated sections: sections with contents are in
/// flash (`.data` too, as its initial values), `.data` and sections without contents (`.bss`,
/// `.uninit`) are RAM.
pub fn elf_memory(path: &Path, elf_bytes: &[u8], blob_bytes: u64) -> Result<ElfMemory> {
    let file = object::File::parse(elf_bytes).map_err(|e| FirmwareError::Elf {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let (mut flash, mut ram) = (0u64, 0u64);
    for section in file.sections() {
        let SectionFlags::Elf { sh_flags } = section.flags() else {
            continue;
        };
        if sh_flags & u64::from(object::elf::SHF_ALLOC) == 0 || section.size() == 0 {
            continue;
        }
        match section.kind() {
            SectionKind::UninitializedData | SectionKind::UninitializedTls => ram += section.size(),
            SectionKind::Data | SectionKind::Tls => {
                flash += section.size();
                ram += section.size();
            }
            _ => flash += section.size(),
        }
    }
    Ok(ElfMemory {
        flash_bytes: flash,
        code_bytes: flash.saturating_sub(blob_bytes),
        ram_bytes: ram,
    })
}
