//! Cilium's ranges: what a pod's address must lie in to be on Cilium. For an overlay, the
//! spec's pool; in ENI mode, every address of every CiliumNode's ENI pool (there is no pool to
//! name in advance).
//!
//! ```text
//! Ranges ─┬─ nets   prefixes (10.245.0.0/16)          contains: any prefix holds the address
//!         └─ hosts  single addresses in a hash set   contains: O(1), however many ENIs
//! ```

use std::net::IpAddr;

use ipnet::IpNet;

/// Cilium's ranges: prefixes (a cluster pool), and single addresses (ENI mode, one per
/// address of every CiliumNode's pool) kept in a set, so a lookup stays cheap however many
/// addresses 5,000 nodes hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    nets: Vec<IpNet>,
    hosts: std::collections::HashSet<IpAddr>,
}

impl Ranges {
    /// From networks; host routes (`/32`, `/128`) go to the address set.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut out = Ranges::default();
        for n in nets {
            if n.prefix_len() == n.max_prefix_len() {
                out.hosts.insert(n.addr());
            } else {
                out.nets.push(n);
            }
        }
        out
    }

    /// Whether an address lies in the ranges.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.hosts.contains(ip) || self.nets.iter().any(|n| n.contains(ip))
    }

    /// Whether a whole network lies in the ranges.
    pub fn contains_net(&self, net: &IpNet) -> bool {
        self.nets.iter().any(|n| n.contains(net))
            || (net.prefix_len() == net.max_prefix_len() && self.hosts.contains(&net.addr()))
    }
}

impl std::fmt::Display for Ranges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&show_nets(&self.nets))?;
        if !self.hosts.is_empty() {
            let sep = if self.nets.is_empty() { "" } else { " and " };
            write!(f, "{sep}Cilium's {} ENI addresses", self.hosts.len())?;
        }
        Ok(())
    }
}

/// `a,b,c` of networks.
pub fn show_nets(nets: &[IpNet]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_single_addresses() {
        let r = Ranges::new([
            "10.245.0.0/16".parse::<IpNet>().expect("net"),
            "192.168.1.7/32".parse().expect("host"),
        ]);
        assert!(r.contains(&"10.245.3.4".parse().expect("ip")));
        assert!(r.contains(&"192.168.1.7".parse().expect("ip")));
        assert!(!r.contains(&"192.168.1.8".parse().expect("ip")));
        assert!(r.contains_net(&"10.245.3.0/24".parse().expect("net")));
        assert!(!r.contains_net(&"10.244.3.0/24".parse().expect("net")));
        assert_eq!(r.to_string(), "10.245.0.0/16 and Cilium's 1 ENI addresses");
    }
}
