//! The bincode configuration shared by every message body ([`crate::wire`]) and by the
//! filter's digest ([`crate::filter::Digest`]): one place, so the two never disagree.

/// The bincode configuration of every body and of the digest.
pub fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}
