//! A budget window's observations: per thread, its writes and the kernel times of its first and
//! last write (how long the probes were really live, and how much a closed-loop writer was
//! slowed by them).

/// One thread's writes in a budget window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadWrites {
    pub writes: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

impl ThreadWrites {
    /// Kernel times of the first and last of these writes (`None` without timestamps).
    pub fn span<'a>(threads: impl IntoIterator<Item = &'a ThreadWrites>) -> Option<(u64, u64)> {
        threads
            .into_iter()
            .filter(|t| t.first_ns != 0)
            .map(|t| (t.first_ns, t.last_ns))
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::ThreadWrites;

    #[test]
    fn the_span_of_a_window_runs_from_the_first_to_the_last_write_of_any_thread() {
        let t = |first_ns, last_ns| ThreadWrites {
            writes: 2,
            first_ns,
            last_ns,
        };
        assert_eq!(ThreadWrites::span(&[t(30, 90), t(10, 50)]), Some((10, 90)));
        // Without timestamps (exact mode) there is no span.
        assert_eq!(ThreadWrites::span(&[t(0, 0)]), None);
        assert_eq!(ThreadWrites::span(&[]), None);
    }
}
