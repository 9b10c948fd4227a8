//! Everything known about a Go binary from the file alone.
