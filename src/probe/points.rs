//! Where the programs attach in a Go binary: every map-assign, map-delete and map-clear
//! function's probe point (an error when one has no recognised prologue: never a silent gap in
//! the counts; wrappers of another such function are left out), the `sync.Map` methods' entries
//! and (those whose result says what they did) RET instructions, and the growth functions'
//! entries and RET instructions, each with its attach cookie (link-time address and role, see
//! `bpf::cookie`).
use anyhow::{anyhow, bail, Result};

use crate::bpf::{cookie, CookieFlag, GrowCookie, GrowRole, ProbeRole};
use crate::gobin::probes::{Placement, ProbePoint, HASH_TRIE};
use crate::gobin::{Arch, GoBinary, ProbeSite, Role};

/// Where each program goes: (file offset, cookie) pairs.
#[derive(Clone, Debug, Default)]
pub struct Points {
    /// The map-operation program: assign, delete and clear functions.
    pub writes: Vec<(u64, u64)>,
    pub grow_entries: Vec<(u64, u64)>,
    pub grow_rets: Vec<(u64, u64)>,
    /// `sync.Map` methods: entries, and RETs of those decided by their results.
    pub sync_entries: Vec<(u64, u64)>,
    pub sync_rets: Vec<(u64, u64)>,
    /// The `sync.Map` methods are the hash-trie's (Go 1.24+: the key comes after a generic
    /// dictionary).
    pub sync_hashtrie: bool,
}

impl Points {
    /// `small_at_entry`: growths of small Swiss maps (`growToSmall`, `growToTable`) are recorded at
    /// their entry, their RETs unprobed (see `GROW_AT_ENTRY` in `maptrace.h`).
    pub fn of(bin: &GoBinary, small_at_entry: bool) -> Result<Points> {
        let sites = assign_sites(bin)?;
        let writes = sites
            .iter()
            .map(|(s, p, role)| (p.file_offset, point_cookie(s, p, u64::from(role.0))))
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
                    grow_entries.push((p.file_offset, point_cookie(&site, p, flagged)));
                    continue;
                }
                grow_entries.push((p.file_offset, point_cookie(&site, p, role)));
                for r in &site.ret_offsets {
                    grow_rets.push((site.file_offset + r, cookie(site.addr + r, role)));
                }
            }
        }
        if grow_entries.is_empty() || (grow_rets.is_empty() && !small_at_entry) {
            grow_entries.clear();
            grow_rets.clear();
        }
        let mut points = Points {
            writes,
            grow_entries,
            grow_rets,
            ..Points::default()
        };
        points.add_sync(bin)?;
        Ok(points)
    }

    /// The probed `sync.Map` methods' points (none in a program that uses no `sync.Map`).
    fn add_sync(&mut self, bin: &GoBinary) -> Result<()> {
        for site in bin.map_functions().into_iter().filter(|s| s.is_probed()) {
            let Some(role) = sync_role(site.role) else {
                continue;
            };
            let p = site
                .probe
                .as_ref()
                .map_err(|e| anyhow!("cannot place a probe: {e}"))?;
            let role_bits = u64::from(role.0);
            self.sync_entries
                .push((p.file_offset, point_cookie(&site, p, role_bits)));
            if decided_at_ret(site.role) {
                for r in &site.ret_offsets {
                    self.sync_rets
                        .push((site.file_offset + r, cookie(site.addr + r, role_bits)));
                }
            }
            self.sync_hashtrie |= site.function.starts_with(HASH_TRIE);
        }
        Ok(())
    }

    pub fn has_grows(&self) -> bool {
        !self.grow_entries.is_empty()
    }

    pub fn has_sync(&self) -> bool {
        !self.sync_entries.is_empty()
    }
}

/// The attach cookie of `site`'s probe point `p` for `role` (role bits): its link-time address,
/// and `COOKIE_STACK_CHECK` on a stack check's branch (the BPF side then skips the hits that go
/// to morestack).
pub fn point_cookie(site: &ProbeSite, p: &ProbePoint, role: u64) -> u64 {
    let flags = match p.placement {
        Placement::StackCheckBranch => u64::from(CookieFlag::COOKIE_STACK_CHECK.0),
        Placement::AfterStackCheck => 0,
    };
    cookie(site.addr + p.offset, role | flags)
}

/// The assign, delete and clear functions to probe, each with its probe point and role.
pub fn assign_sites(bin: &GoBinary) -> Result<Vec<(ProbeSite, ProbePoint, ProbeRole)>> {
    if bin.arch() != Arch::X86_64 {
        bail!(
            "unsupported architecture {}: tracing works on x86-64 only",
            bin.arch()
        );
    }
    let mut out = Vec::new();
    for site in bin.map_functions() {
        let Some(role) = probe_role(site.role).filter(|_| site.is_probed()) else {
            continue;
        };
        let point = site
            .probe
            .clone()
            .map_err(|e| anyhow!("cannot place a probe: {e}"))?;
        out.push((site, point, role));
    }
    if !out.iter().any(|(s, _, _)| s.role.is_assign()) {
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

/// `enum probe_role` for a probed `sync.Map` method (`Delete` only wraps `LoadAndDelete`: a
/// `Delete` that does not is not probed, its deletes are not seen).
pub fn sync_role(role: Role) -> Option<ProbeRole> {
    Some(match role {
        Role::SyncStore | Role::SyncSwap => ProbeRole::ROLE_SYNC_STORE,
        Role::SyncLoadOrStore => ProbeRole::ROLE_SYNC_LOAD_OR_STORE,
        Role::SyncCompareAndSwap => ProbeRole::ROLE_SYNC_CAS,
        Role::SyncLoadAndDelete => ProbeRole::ROLE_SYNC_LOAD_AND_DELETE,
        Role::SyncCompareAndDelete => ProbeRole::ROLE_SYNC_CAD,
        Role::SyncClear => ProbeRole::ROLE_SYNC_CLEAR,
        _ => return None,
    })
}

/// Whether a function's operation is decided by its results (a `sync.Map` method probed at its
/// RETs too).
pub fn decided_at_ret(role: Role) -> bool {
    sync_role(role)
        .is_some_and(|r| !matches!(r, ProbeRole::ROLE_SYNC_STORE | ProbeRole::ROLE_SYNC_CLEAR))
}

/// `enum probe_role` for an assign, delete or clear function; `None` for roles the map probe
/// does not handle.
pub fn probe_role(role: Role) -> Option<ProbeRole> {
    Some(match role {
        Role::Assign => ProbeRole::ROLE_ASSIGN,
        Role::AssignFast32 => ProbeRole::ROLE_ASSIGN_FAST32,
        Role::AssignFast64 => ProbeRole::ROLE_ASSIGN_FAST64,
        Role::AssignFast64Ptr => ProbeRole::ROLE_ASSIGN_FAST64PTR,
        Role::AssignFastStr => ProbeRole::ROLE_ASSIGN_FASTSTR,
        Role::Delete => ProbeRole::ROLE_DELETE,
        Role::DeleteFast32 => ProbeRole::ROLE_DELETE_FAST32,
        Role::DeleteFast64 => ProbeRole::ROLE_DELETE_FAST64,
        Role::DeleteFastStr => ProbeRole::ROLE_DELETE_FASTSTR,
        Role::Clear => ProbeRole::ROLE_CLEAR,
        _ => return None,
    })
}
