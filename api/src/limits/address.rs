//! What a client's address is keyed on. One host, or one home, gets a whole IPv6
//! /64, so keying on the full address would let it rotate through 2^64 budgets;
//! the /64 is the smallest block an ISP hands out (RFC 6177), so it is the key.

use std::net::{IpAddr, Ipv6Addr};

/// The address a client's budgets and pending cap are keyed on: an IPv4 address as
/// is (also when written IPv4-mapped, `::ffff:a.b.c.d`), an IPv6 address as its /64
/// (the low 64 bits zeroed).
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// [`client_network`] as stored in `async_operation.client_key`: `203.0.113.5` or
/// `2001:db8:1:2::/64` (at most 43 characters).
pub fn client_key(ip: IpAddr) -> String {
    match client_network(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_keyed_on_their_64_and_ipv4_on_the_address() {
        // Every address of one /64 is one client…
        assert_eq!(
            client_network(ip("2001:db8:1:2::1")),
            client_network(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_eq!(
            client_network(ip("2001:db8:1:2:abcd::7")),
            ip("2001:db8:1:2::")
        );
        // …and the next /64 is another.
        assert_ne!(
            client_network(ip("2001:db8:1:2::1")),
            client_network(ip("2001:db8:1:3::1"))
        );
        // IPv4 keeps its full address, however it is written.
        assert_eq!(client_network(ip("203.0.113.5")), ip("203.0.113.5"));
        assert_ne!(
            client_network(ip("203.0.113.5")),
            client_network(ip("203.0.113.6"))
        );
        assert_eq!(client_network(ip("::ffff:203.0.113.5")), ip("203.0.113.5"));

        assert_eq!(client_key(ip("203.0.113.5")), "203.0.113.5");
        assert_eq!(client_key(ip("::ffff:203.0.113.5")), "203.0.113.5");
        assert_eq!(client_key(ip("2001:db8:1:2:abcd::7")), "2001:db8:1:2::/64");
        let longest = client_key(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(longest, "ffff:ffff:ffff:ffff::/64");
        assert!(longest.len() <= 64, "fits the column");
    }
}
