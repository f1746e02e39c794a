//! The guest list: which node owns which VMID, derived from `nodes/<node>/<type>/<vmid>.conf`.
//!
//! Kept current by every tree change (the tree calls [`VmList::register`] and
//! [`VmList::remove`]); rebuilt from scratch after a load. VMIDs are unique cluster-wide.

use std::collections::HashMap;

use crate::path::{split, valid_nodename};

/// Guest type, with the original's numeric codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmType {
    Qemu = 1,
    Openvz = 2,
    Lxc = 3,
}

impl VmType {
    pub fn from_dir(dir: &str) -> Option<VmType> {
        match dir {
            "qemu-server" => Some(VmType::Qemu),
            "openvz" => Some(VmType::Openvz),
            "lxc" => Some(VmType::Lxc),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            VmType::Qemu => "qemu",
            VmType::Openvz => "openvz",
            VmType::Lxc => "lxc",
        }
    }
    pub fn dir(self) -> &'static str {
        match self {
            VmType::Qemu => "qemu-server",
            VmType::Openvz => "openvz",
            VmType::Lxc => "lxc",
        }
    }
}

/// What a VM config path says: owner node, guest type, VMID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfigPath {
    pub node: String,
    pub vmtype: VmType,
    pub vmid: u32,
}

/// Parses `nodes/<node>/<qemu-server|lxc|openvz>/<vmid>.conf`; None for any other path.
pub fn parse_vm_config_path(path: &str) -> Option<VmConfigPath> {
    let (dir, base) = split(path);
    let mut parts = dir.split('/');
    if parts.next()? != "nodes" {
        return None;
    }
    let node = parts.next()?;
    let tdir = parts.next()?;
    if parts.next().is_some() || !valid_nodename(node) {
        return None;
    }
    let vmtype = VmType::from_dir(tdir)?;
    let vmid = parse_vmid(base.strip_suffix(".conf")?)?;
    Some(VmConfigPath { node: node.to_string(), vmtype, vmid })
}

/// Decimal VMID with a leading digit 1-9 that fits in u32.
pub fn parse_vmid(s: &str) -> Option<u32> {
    let first = s.bytes().next()?;
    if !(b'1'..=b'9').contains(&first) || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 10 {
        return None;
    }
    s.parse::<u64>().ok().and_then(|v| u32::try_from(v).ok())
}

/// One guest in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmEntry {
    pub node: String,
    pub vmtype: VmType,
    pub version: u32,
}

/// VMID → owner, with the list version and the per-entry version counter.
#[derive(Debug, Default, Clone)]
pub struct VmList {
    pub entries: HashMap<u32, VmEntry>,
    /// Bumped on every register/remove/replace (`"version"` of `.vmlist`).
    pub version: u32,
    entry_counter: u32,
}

impl VmList {
    /// True when `vmid` is registered for a different node or type than `cfg` says.
    pub fn conflicts(&self, cfg: &VmConfigPath) -> bool {
        self.entries
            .get(&cfg.vmid)
            .is_some_and(|e| e.node != cfg.node || e.vmtype != cfg.vmtype)
    }

    pub fn register(&mut self, cfg: &VmConfigPath) {
        self.entry_counter = self.entry_counter.wrapping_add(1);
        self.entries.insert(
            cfg.vmid,
            VmEntry { node: cfg.node.clone(), vmtype: cfg.vmtype, version: self.entry_counter },
        );
        self.version = self.version.wrapping_add(1);
    }

    /// Removes the guest `cfg` names if the list has it on that node with that type (a config
    /// file going away does not unregister a VMID another node owns).
    pub fn remove_config(&mut self, cfg: &VmConfigPath) {
        if self.entries.get(&cfg.vmid).is_some_and(|e| e.node == cfg.node && e.vmtype == cfg.vmtype) {
            self.remove(cfg.vmid);
        }
    }

    pub fn remove(&mut self, vmid: u32) {
        self.entries.remove(&vmid);
        self.version = self.version.wrapping_add(1);
    }

    /// Replaces the whole list (after a load or resync); bumps the list version once.
    pub fn replace(&mut self, configs: &[VmConfigPath]) {
        self.entries.clear();
        for cfg in configs {
            self.entry_counter = self.entry_counter.wrapping_add(1);
            self.entries.insert(
                cfg.vmid,
                VmEntry { node: cfg.node.clone(), vmtype: cfg.vmtype, version: self.entry_counter },
            );
        }
        self.version = self.version.wrapping_add(1);
    }

    /// The `.vmlist` text exactly as the original prints it (entries in arbitrary order).
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\n\"version\": {}", self.version);
        if self.entries.is_empty() {
            out.push_str("\n\n}\n");
            return out;
        }
        out.push_str(",\n\"ids\": {\n");
        let mut ids: Vec<_> = self.entries.iter().collect();
        ids.sort_by_key(|(id, _)| **id);
        let lines: Vec<String> = ids
            .iter()
            .map(|(id, e)| {
                format!(
                    "\"{}\": {{ \"node\": \"{}\", \"type\": \"{}\", \"version\": {} }}",
                    id,
                    e.node,
                    e.vmtype.name(),
                    e.version
                )
            })
            .collect();
        out.push_str(&lines.join(",\n"));
        out.push_str("}\n\n}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_config_paths() {
        let c = parse_vm_config_path("nodes/pve1/qemu-server/100.conf").unwrap();
        assert_eq!((c.node.as_str(), c.vmtype, c.vmid), ("pve1", VmType::Qemu, 100));
        assert!(parse_vm_config_path("nodes/pve1/lxc/0100.conf").is_none());
        assert!(parse_vm_config_path("nodes/pve.1/lxc/100.conf").is_none());
        assert!(parse_vm_config_path("nodes/pve1/lxc/x/100.conf").is_none());
        assert!(parse_vm_config_path("nodes/pve1/lxc/4294967296.conf").is_none());
        assert!(parse_vm_config_path("nodes/pve1/lxc/4294967295.conf").is_some());
    }

    #[test]
    fn vmlist_text_shapes() {
        let mut l = VmList::default();
        assert_eq!(l.to_json(), "{\n\"version\": 0\n\n}\n");
        l.register(&parse_vm_config_path("nodes/n2/lxc/100.conf").unwrap());
        assert_eq!(
            l.to_json(),
            "{\n\"version\": 1,\n\"ids\": {\n\"100\": { \"node\": \"n2\", \"type\": \"lxc\", \"version\": 1 }}\n\n}\n"
        );
    }
}
