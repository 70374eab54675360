//! revocast-publisher (filled in by its own issue).
