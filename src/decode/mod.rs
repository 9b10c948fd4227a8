//! Decoding what the BPF side sends: ring-buffer records into typed writes and growths
//! (`records`), key bytes into identities and Go's `%v` text, and the key plans the BPF side
//! needs to capture them (`keys`), map headers and growth records into lengths, capacities and
//! growths tied to the write that triggered them (`internals`), counts aggregated in the
//! kernel's slots accounted for exactly (`slots`), and `sync.Map` operations as map operations
//! (`syncmap`). Pure logic, tested without BPF.
pub mod internals;
pub mod keys;
pub mod records;
pub mod slots;
pub mod syncmap;
