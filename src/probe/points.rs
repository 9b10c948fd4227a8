//! Where the programs attach in a Go binary: every map-assign function's probe point (an error
//! when one has no recognised prologue: never a silent gap in the counts), and the growth
//! functions' entries and RET instructions, each with its attach cookie (link-time address and
//! role, see `bpf::cookie`).
use anyhow::{anyhow, bail, Result};

use crate::bpf::{cookie, GrowCookie, GrowRole, ProbeRole};
use crate::gobin::{Arch, GoBinary, ProbeSite, Role};

/// Where each program goes: (file offset, cookie) pairs.
#[derive(Clone, Debug, Default)]
pub struct Points {
    pub writes: Vec<(u64, u64)>,
    pub grow_entries: Vec<(u64, u64)>,
    pub grow_rets: Vec<(u64, u64)>,
}

impl Points {
    /// `small_at_entry`: growths of small Swiss maps (`growToSmall`, `growToTable`) are recorded at
    /// their entry, their RETs unprobed (see `GROW_AT_ENTRY` in `maptrace.h`).
    pub fn of(bin: &GoBinary, small_at_entry: bool) -> Result<Points> {
        let sites = assign_sites(bin)?;
        let writes = sites
            .iter()
            .map(|(s, off, role)| {
                let probe_addr = s.addr + s.probe.as_ref().map(|p| p.offset).unwrap_or(0);
                (*off, cookie(probe_addr, u64::from(role.0)))
            })
            .collect();
        let (mut grow_entries, mut grow_rets) = (Vec::new(), Vec::new());
        for site in bin.map_functions() {
            let Some(role) = grow_role(site.role) else {
                continue;
            };
            let at_entry =
                small_at_entry && matches!(role, GrowRole::GROW_TO_SMALL | GrowRole::GROW_TO_TABLE);
            let role = u64::from(role.0);
            // A growth function without a probe point leaves growth untraced, not the writes.
            if let Ok(p) = &site.probe {
                if at_entry {
                    let flagged = role | u64::from(GrowCookie::GROW_AT_ENTRY.0);
                    grow_entries.push((p.file_offset, cookie(site.addr + p.offset, flagged)));
                    continue;
                }
                grow_entries.push((p.file_offset, cookie(site.addr + p.offset, role)));
                for r in &site.ret_offsets {
                    grow_rets.push((site.file_offset + r, cookie(site.addr + r, role)));
                }
            }
        }
        if grow_entries.is_empty() || (grow_rets.is_empty() && !small_at_entry) {
            grow_entries.clear();
            grow_rets.clear();
        }
        Ok(Points {
            writes,
            grow_entries,
            grow_rets,
        })
    }

    pub fn has_grows(&self) -> bool {
        !self.grow_entries.is_empty()
    }
}

/// The assign functions to probe, each with its probe point's file offset and role.
pub fn assign_sites(bin: &GoBinary) -> Result<Vec<(ProbeSite, u64, ProbeRole)>> {
    if bin.arch() != Arch::X86_64 {
        bail!(
            "unsupported architecture {}: tracing works on x86-64 only",
            bin.arch()
        );
    }
    let mut out = Vec::new();
    for site in bin.map_functions() {
        let Some(role) = probe_role(site.role) else {
            continue;
        };
        let point = site
            .probe
            .clone()
            .map_err(|e| anyhow!("cannot place a probe: {e}"))?;
        out.push((site, point.file_offset, role));
    }
    if out.is_empty() {
        bail!("no map-assign function found in the binary: it never writes a Go map (or they were renamed)");
    }
    Ok(out)
}

/// `enum grow_role` for a growth function we probe; `None` for the others (`(*table).grow` and
/// `split` run inside `rehash`, whose probes already cover them).
pub fn grow_role(role: Role) -> Option<GrowRole> {
    Some(match role {
        Role::HashGrow => GrowRole::GROW_HASHGROW,
        Role::GrowToSmall => GrowRole::GROW_TO_SMALL,
        Role::GrowToTable => GrowRole::GROW_TO_TABLE,
        Role::TableRehash => GrowRole::GROW_REHASH,
        _ => return None,
    })
}

/// `enum probe_role` for an assign function; `None` for roles the write probe does not handle.
pub fn probe_role(role: Role) -> Option<ProbeRole> {
    Some(match role {
        Role::Assign => ProbeRole::ROLE_ASSIGN,
        Role::AssignFast32 => ProbeRole::ROLE_ASSIGN_FAST32,
        Role::AssignFast64 => ProbeRole::ROLE_ASSIGN_FAST64,
        Role::AssignFast64Ptr => ProbeRole::ROLE_ASSIGN_FAST64PTR,
        Role::AssignFastStr => ProbeRole::ROLE_ASSIGN_FASTSTR,
        _ => return None,
    })
}
