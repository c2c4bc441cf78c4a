//! Ports for the tests' own servers, outside the kernel's ephemeral range: a port in that
//! range can be taken at any moment by an outgoing connection (every reconnect to a
//! restarting server takes one, and keeps it in TIME_WAIT for a minute), and a server
//! restarted on its ports then fails to bind them.

use std::ops::RangeInclusive;

/// The kernel's range for outgoing connections' local ports.
fn ephemeral() -> RangeInclusive<u16> {
    let read = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let parsed = read.and_then(|text| {
        let mut bounds = text.split_whitespace().map(str::parse::<u16>);
        Some((bounds.next()?.ok()?, bounds.next()?.ok()?))
    });
    let (low, high) = parsed.unwrap_or((32_768, 60_999));
    low..=high
}

/// The first `base` at or above `from` (stepping by `step`) whose block `base - below ..=
/// base + above` lies outside the ephemeral range and is free by `free`.
pub fn free_block(
    from: u16,
    step: u16,
    (below, above): (u16, u16),
    free: impl Fn(u16) -> bool,
) -> Option<u16> {
    let ephemeral = ephemeral();
    (from.max(below)..=u16::MAX - above)
        .step_by(usize::from(step.max(1)))
        .find(|&base| {
            let block = base - below..=base + above;
            let clear = *block.end() < *ephemeral.start() || *block.start() > *ephemeral.end();
            clear && block.clone().all(&free)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_skip_the_ephemeral_range_and_taken_ports() {
        let range = ephemeral();
        let base = free_block(*range.start() - 5, 20, (1, 9), |_| true).unwrap();
        assert!(base - 1 > *range.end(), "{base} overlaps {range:?}");
        let base = free_block(1_000, 20, (1, 9), |p| p != 1_005).unwrap();
        assert_eq!(base, 1_020);
    }
}
