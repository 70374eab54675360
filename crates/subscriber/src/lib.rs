//! revocast-subscriber (filled in by its own issue).
