//! Version counters of the files Proxmox's Perl stack caches (`.version`).
//!
//! Each counter counts changes to one exact path since the daemon started; all are bumped
//! together whenever the whole tree is (re)loaded.

/// The observed paths, in the original's table order (which is the `.version` order).
pub const OBSERVED_PATHS: [&str; 43] = [
    "corosync.conf",
    "corosync.conf.new",
    "storage.cfg",
    "user.cfg",
    "domains.cfg",
    "notifications.cfg",
    "priv/notifications.cfg",
    "priv/shadow.cfg",
    "priv/acme/plugins.cfg",
    "priv/tfa.cfg",
    "priv/token.cfg",
    "priv/wg-keys.cfg",
    "datacenter.cfg",
    "vzdump.cron",
    "vzdump.conf",
    "jobs.cfg",
    "ha/crm_commands",
    "ha/manager_status",
    "ha/resources.cfg",
    "ha/rules.cfg",
    "ha/groups.cfg",
    "ha/fence.cfg",
    "status.cfg",
    "replication.cfg",
    "ceph.conf",
    "sdn/vnets.cfg",
    "sdn/zones.cfg",
    "sdn/controllers.cfg",
    "sdn/subnets.cfg",
    "sdn/ipams.cfg",
    "sdn/mac-cache.json",
    "sdn/pve-ipam-state.json",
    "sdn/dns.cfg",
    "sdn/fabrics.cfg",
    "sdn/route-maps.cfg",
    "sdn/prefix-lists.cfg",
    "sdn/.running-config",
    "virtual-guest/cpu-models.conf",
    "virtual-guest/profiles.cfg",
    "firewall/cluster.fw",
    "mapping/directory.cfg",
    "mapping/pci.cfg",
    "mapping/usb.cfg",
];

/// One counter per observed path.
#[derive(Debug, Clone)]
pub struct ObservedCounters {
    counters: [u32; OBSERVED_PATHS.len()],
}

impl Default for ObservedCounters {
    fn default() -> Self {
        ObservedCounters { counters: [0; OBSERVED_PATHS.len()] }
    }
}

impl ObservedCounters {
    /// Bumps the counter of `path` if it is observed (exact match).
    pub fn record_change(&mut self, path: &str) {
        if let Some(i) = OBSERVED_PATHS.iter().position(|p| *p == path) {
            self.counters[i] = self.counters[i].wrapping_add(1);
        }
    }

    /// Bumps every counter (after loading or resyncing the whole tree).
    pub fn record_reload(&mut self) {
        for c in self.counters.iter_mut() {
            *c = c.wrapping_add(1);
        }
    }

    /// (path, counter) pairs in table order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u32)> + '_ {
        OBSERVED_PATHS.iter().copied().zip(self.counters.iter().copied())
    }
}
